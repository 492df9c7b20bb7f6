"""The image benchmark's server: the atom's app plus a route that only loads the images.

bench_images.py copies it over server.py in a temporary bake of the default atom; it is
not part of the atom. ``POST {prefix}/bench/load`` takes the detect body and answers the
shapes of the loaded images; no model is loaded.

python server.py --port P [--host H]
"""

import argparse
from typing import Annotated

import uvicorn
from fastapi import Depends
from my_atom.api import Router
from my_atom.api.app import get_app
from my_atom.api.dependencies import get_image_loader
from my_atom.api.schema.payload import DetectPayload
from my_atom.config import get_settings
from my_atom.lib.load_image import ImageLoader
from starlette.concurrency import run_in_threadpool

router = Router()


@router.post("/bench/load")
async def load(
    payload: DetectPayload, loader: Annotated[ImageLoader, Depends(get_image_loader)]
) -> dict[str, list[list[int]]]:
    """Load the images as detect does (in a worker thread, RGB) and answer their shapes."""
    images = await run_in_threadpool(loader.load, payload.src_type, payload.data)
    return {"shapes": [list(image.shape) for image in images]}


def main() -> None:
    """Serve the atom's app, without its model, plus the benchmark route."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    settings = get_settings()
    app = get_app(settings, model_loaders={})
    app.include_router(router, prefix=settings.atom_api_prefix)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
