"""gazecrop's saliency model: a DeepGaze network (VGG16 body, trained readout) in Keras.

``load_model("default")`` returns the bundled trained model, ``load_model("fast")`` its pruned,
distilled version, about 16× faster (``gazecrop.tools.train_fast``); ``load_model("tiny")`` a tiny
seeded stand-in for tests. See ``model/README.md`` (the model card).

Keras and TensorFlow are imported on first use, so ``gazecrop.model.saliency`` stays light to import.
``gazecrop.model.card`` reads a weights file's version, input short side and body with h5py alone.
This layer imports the Beam-free core (``gazecrop.decode``) and never Beam (``.importlinter``).
"""

__all__ = ["SaliencyModel", "WeightsError", "load_model"]


def __getattr__(name):
    if name in __all__:
        from gazecrop.model import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
