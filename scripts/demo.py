"""make demo: bake the default atom, start it, detect faces in a photo, stop it.

Prints what it does and the detections; exits 1 if no face is found.
"""

import base64
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.atomctl import AtomServer, bake, http

BUILD = Path(__file__).resolve().parent.parent / "build" / "demo"


def main() -> int:
    """Run the demo; 0 when at least one face was found."""
    started = time.perf_counter()
    project = bake(BUILD)
    print(f"baked {project} in {time.perf_counter() - started:.1f} s")
    photo = project / "tests" / "data" / "astronaut.jpg"
    with AtomServer(project, env={"LOG_ROOT": str(BUILD / "logs")}) as server:
        ready = server.seconds_to_ready or 0.0
        print(f"started {server.base} (pid {server.process.pid}), ready in {ready:.2f} s")
        body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
        status, _, reply = http("POST", server.url("/detect"), body)
        took = reply.get("took") if isinstance(reply, dict) else None
        print(f"POST {server.prefix}/detect with {photo.name}: HTTP {status}, took {took} ms")
        faces = reply["objects"][0] if status == 200 else []
        print(f"{'label':<6} {'conf':>6} {'xmin':>5} {'ymin':>5} {'xmax':>5} {'ymax':>5}")
        for face in faces:
            print(
                f"{face['label']:<6} {face['conf']:>6.3f} {face['xmin']:>5} {face['ymin']:>5}"
                f" {face['xmax']:>5} {face['ymax']:>5}"
            )
    print(f"stopped (exit status {server.process.returncode}); {len(faces)} face(s) found")
    return 0 if faces else 1


if __name__ == "__main__":
    raise SystemExit(main())
