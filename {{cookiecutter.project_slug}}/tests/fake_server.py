"""``server.py`` with fake models: ``python tests/fake_server.py --port P``.

The tests of the server process (signals, settings, Serving registration, tracing) start
this script: the same ``server.main`` as ``server.py``, with the models of ``fakes.py``, so
that a model added to the atom does not make them wait for it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import server
from {{ cookiecutter.package_name }}.api.app import get_app
from tests.fakes import loaders

if __name__ == "__main__":
    raise SystemExit(
        server.main(app_factory=lambda settings: get_app(settings, model_loaders=loaders()))
    )
