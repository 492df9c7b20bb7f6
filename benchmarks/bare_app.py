"""The baseline of the benchmarks: a bare FastAPI app with one ping route, run like server.py.

python bare_app.py --port P
"""

import argparse

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/d2atom/v1/health/ping")
async def ping() -> dict[str, bool]:
    """The same body as the atom's ping."""
    return {"is_alive": True}


@app.get("/d2atom/v1/health/ready")
async def ready() -> dict[str, bool]:
    """Always ready: there is no model."""
    return {"is_ready": True}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
