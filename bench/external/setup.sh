#!/usr/bin/env bash
# Create the two virtual environments that the external end-to-end benchmark runs in:
#   bench/.venvs/dlib       dlib's HOG face detector + 68-point shape predictor
#   bench/.venvs/mediapipe  MediaPipe FaceMesh 0.10.21, whose wheel ships the model files
# Each tool gets its own environment because MediaPipe 0.10.21 needs numpy<2 while the
# project runs on numpy 2. All packages come from PyPI at the versions pinned in
# requirements-dlib.txt and requirements-mediapipe.txt next to this script.
#
# Usage: bash bench/external/setup.sh            (uses python3.11 from PATH)
#        PYTHON=/path/to/python3.11 bash bench/external/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$(cd "$here/.." && pwd)/.venvs"
python="${PYTHON:-python3.11}"

if ! "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "setup.sh: $python is not Python 3.11; the pinned wheels are for CPython 3.11." >&2
    echo "Set PYTHON to a Python 3.11 interpreter and run again." >&2
    exit 1
fi

for tool in dlib mediapipe; do
    target="$venvs/$tool"
    echo "Creating $target"
    "$python" -m venv --clear "$target"
    "$target/bin/pip" install --quiet --upgrade pip==24.3.1 setuptools==75.6.0 wheel==0.45.1
    "$target/bin/pip" install --quiet -r "$here/requirements-$tool.txt"
done

# Check that the model files each script needs were installed with the packages.
"$venvs/dlib/bin/python" -c '
import dlib, face_recognition_models
print("dlib", dlib.__version__, face_recognition_models.pose_predictor_model_location())'
"$venvs/mediapipe/bin/python" -c '
import mediapipe, numpy
from mediapipe.python.solutions import face_mesh
print("mediapipe", mediapipe.__version__, "numpy", numpy.__version__)'
