# One place for set-up. `make test` and `make demo` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned to the build these machines carry on local disk; override on other machines.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
XVFB   := xvfb-run -a -s "-screen 0 1280x1024x24"
# CI reproducibility: the project is installed under constraints.txt, the versions the whole suite last passed
# with, so a new napari/Qt/numpy release cannot break CI unseen. Users installing the package are not
# constrained. CONSTRAINTS= (empty) installs the newest releases instead, to try them.
CONSTRAINTS ?= constraints.txt
# The Qt binding the extras install (PyQt6). A venv made before the switch from PyQt5 keeps PyQt5 beside it and
# qtpy would still prefer PyQt5; QT_API=pyqt5 (or pyside6, installed by hand) runs on another binding.
export QT_API ?= pyqt6
PYTEST_ARGS ?=

# Debian packages a headless napari needs: Xvfb, Mesa GL and the xcb libraries Qt loads (Qt 6's xcb plugin
# needs libxcb-cursor0; QtCore of both Qt 5 and Qt 6 links GLib, which slim images lack).
APT_PACKAGES := xvfb xauth libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
	libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 \
	libxcb-cursor0 libdbus-1-3 libfontconfig1 libglib2.0-0

.PHONY: venv sysdeps test test-core demo bench clean sample-data

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[testing]"
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "Installing system packages for a headless display:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "Missing system packages for a headless display:$$missing"; \
	  echo "Install them (as root: apt-get install$$missing) or run with a real display."; exit 1; \
	fi

test: venv sysdeps
	QT_QPA_PLATFORM=xcb $(XVFB) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Core tests only (no display, no Qt).
test-core: venv
	$(BIN)/python -m pytest -m "not gui" $(PYTEST_ARGS)

demo: venv
	@if [ -n "$$DISPLAY" ]; then \
	  $(BIN)/python scripts/demo.py; \
	else \
	  $(MAKE) --no-print-directory sysdeps && \
	  echo "No display: running the demo headless under Xvfb; screenshots go to docs/img/." && \
	  QT_QPA_PLATFORM=xcb $(XVFB) $(BIN)/python scripts/demo.py --headless --out docs/img; \
	fi

sample-data: venv
	$(BIN)/python scripts/make_sample_data.py

# Every benchmark, one after the other (about an hour on 2 CPU cores); each rewrites its own section of
# docs/benchmarks.md. Run them on an otherwise idle machine: timings are shared-CPU sensitive.
bench: venv sysdeps
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/sshr_vs_multistage.py --n-train 600 --epochs 6
	$(BIN)/python benchmarks/segmix_ablation.py
	$(BIN)/python benchmarks/sam_latency.py
	QT_QPA_PLATFORM=xcb $(XVFB) $(BIN)/python benchmarks/human_in_the_loop.py --stall
	QT_QPA_PLATFORM=xcb $(XVFB) $(BIN)/python benchmarks/viewer_responsiveness.py
	$(BIN)/python benchmarks/real_glas.py  # real GlaS images from ../shared/data/glas (skips, saying so, without)
	$(BIN)/python benchmarks/real_glas.py --luad-demo-hitl

clean:
	rm -rf $(VENV) build dist .pytest_cache
