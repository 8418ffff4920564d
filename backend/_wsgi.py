"""The entry point, in label-studio-ml's ``_wsgi.py`` shape.

* gunicorn: ``gunicorn --chdir backend -c backend/gunicorn.conf.py _wsgi:app``
  (``WORKERS``, ``THREADS``, ``PORT``);
* label-studio-ml's own starter: ``label-studio-ml start backend`` (runs ``python backend/_wsgi.py``;
  ``--port``, ``--host``, ``--log-level``, ``--model-dir`` as in its template).

Settings come from the environment (see ``labelplan_backend.settings``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a checkout, like the template

from labelplan_backend.api import configure_logging, init_app
from labelplan_backend.model import LabelplanModel
from labelplan_backend.settings import BackendSettings

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="labelplan ML backend for Label Studio")
    parser.add_argument(
        "-p", "--port", dest="port", type=int, default=int(os.environ.get("PORT", 9090))
    )
    parser.add_argument("--host", dest="host", type=str, default="0.0.0.0")
    parser.add_argument(
        "--log-level", dest="log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None
    )
    parser.add_argument("--model-dir", dest="model_dir", default=None)
    args = parser.parse_args()
    if args.log_level:
        os.environ["LOG_LEVEL"] = args.log_level
    if args.model_dir:
        os.environ["MODEL_DIR"] = args.model_dir
    settings = BackendSettings.from_env()
    configure_logging(settings)
    app = init_app(model_class=LabelplanModel, settings=settings)
    app.run(host=args.host, port=args.port, threaded=True)
else:
    # for gunicorn (and uWSGI) use
    settings = BackendSettings.from_env()
    configure_logging(settings)
    app = init_app(model_class=LabelplanModel, settings=settings)
