"""gazecrop: crop images to target aspect ratios, keeping what people look at.

    import gazecrop
    crops = gazecrop.crop("photo.jpg", aspect_ratios=("1:1", "16:9"))

The package's layers, bottom to top (imports point down only; `.importlinter` checks it in CI):

* `gazecrop.decode`, `gazecrop.paths`, `gazecrop.search`, `gazecrop.records` (this folder, core/):
  decoding, output names, the crop search, the records stages pass. Neither Beam nor TensorFlow.
* `gazecrop.model`: the DeepGaze network, its weights and loading (TensorFlow/Keras, no Beam).
* `gazecrop.api`: `gazecrop.crop`, one picture at a time, no Beam job.
* `gazecrop.transforms`: the Beam stages; `gazecrop.pipeline`: the one stage chain, the command line.
* `gazecrop.tools`: research and benchmark commands (training, evaluation, benches); nothing imports them.
"""

__version__ = "0.1.0"

__all__ = ["crop", "__version__"]


def __getattr__(name):
    # Lazy, so that `import gazecrop.decode` (or `gazecrop.paths`) loads neither TensorFlow nor Beam.
    if name == "crop":
        from gazecrop.api import crop

        return crop
    raise AttributeError(f"module 'gazecrop' has no attribute {name!r}")
