"""Face emotion classifiers: one functional builder, four backbones, optional attention and geometry.

``build_face_model(config, classes)`` returns a Keras functional model with input ``"image"``
(raw 0-255 pixels; the model rescales in-graph, so recognisers never duplicate preprocessing) and,
when ``config.geometry``, input ``"geometry"`` (landmark features from
:mod:`emotion_keras.preprocess.face_align`). The last two layers are ``"embedding"`` and
``"probabilities"`` (float32 softmax), which fusion and the recognisers rely on.

Backbones: ``vgg`` and ``resnet`` are small from-scratch CNNs sized by ``width``/``depth`` for 48-112
pixel faces; ``mobilenetv3small`` and ``efficientnetv2b0`` are ``keras.applications`` architectures
built with ``weights=None`` (nothing is downloaded; ImageNet weights would not fit grey 48 px faces
anyway). Augmentation is :class:`~emotion_keras.models.layers.ImageAugment`, inside the model so it
is jit-compiled with the training step and inactive at inference.
"""

from __future__ import annotations

import dataclasses

from emotion_keras.config import Config, ConfigError

BACKBONES = ("vgg", "resnet", "mobilenetv3small", "efficientnetv2b0")
APPLICATIONS = ("mobilenetv3small", "efficientnetv2b0")


def _geometry_dim() -> int:
    """Length of the geometry vector written by face preprocessing (its module is the source)."""
    try:
        from emotion_keras.preprocess.face_align import GEOMETRY_DIM
    except ImportError:  # face_align not present: the caller must set geometry_dim explicitly
        return 0
    return int(GEOMETRY_DIM)


@dataclasses.dataclass
class FaceModelConfig(Config):
    """Shape of a face model; stored on the model card as ``model_config``."""

    backbone: str = "vgg"          # vgg | resnet | mobilenetv3small | efficientnetv2b0
    input_size: int = 48           # square input side in pixels
    channels: int = 1              # 1 (grey) or 3 (RGB)
    width: int = 32                # filters of the first block (vgg/resnet); doubles per block up to 8x
    depth: int = 4                 # number of blocks (vgg/resnet), each halves the resolution
    attention: bool = True         # SelfAttention2D in the backbone
    attention_after: int = 2       # block index it follows (vgg/resnet; negative counts from the end);
                                   # keras.applications backbones get it on their final feature map
    attention_reduction: int = 8   # query/key channels = C // reduction
    geometry: bool = False         # second input "geometry" through a small MLP
    geometry_dim: int = 0          # 0: preprocess.face_align.GEOMETRY_DIM
    geometry_units: int = 64
    dropout: float = 0.3
    embedding_dim: int = 128
    augment: bool = True           # ImageAugment at training time
    flip: bool = True
    max_shift: float = 0.1         # fraction of the side
    max_rotation: float = 10.0     # degrees
    zoom: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    erase: float = 0.0             # probability of random erasing per image
    crop: int = 0                  # centre crop side in px (e.g. 40 of 48; 0: none); with max_shift
                                   # this is multi-crop training, and ten-crop TTA shifts the input

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, not {self.backbone!r}")
        if not 32 <= int(self.input_size) <= 128:
            raise ConfigError(f"input_size must be between 32 and 128 pixels, not {self.input_size}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, not {self.channels}")
        if self.width < 1 or self.depth < 1 or self.embedding_dim < 1:
            raise ConfigError("width, depth and embedding_dim must be positive")
        if self.backbone not in APPLICATIONS and self.input_size < 2 ** self.depth:
            raise ConfigError(f"depth {self.depth} halves {self.input_size} px below one pixel")
        if not -self.depth <= self.attention_after < self.depth:
            raise ConfigError(f"attention_after must index one of the {self.depth} blocks, "
                              f"not {self.attention_after}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.crop and not 16 <= self.crop <= self.input_size:
            raise ConfigError(f"crop must be between 16 px and input_size ({self.input_size}), not {self.crop}")
        if self.geometry_dim < 0:
            raise ConfigError("geometry_dim must be >= 0 (0 means the preprocessing default)")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, self.channels)

    def resolved_geometry_dim(self) -> int:
        dim = self.geometry_dim or _geometry_dim()
        if self.geometry and dim < 1:
            raise ConfigError("geometry=True needs geometry_dim (preprocess.face_align is unavailable)")
        return dim


def build_face_model(config: FaceModelConfig, classes):
    """Functional face classifier for ``classes`` (a list of labels or their count)."""
    import keras

    from emotion_keras.models.layers import ImageAugment, SelfAttention2D

    n_classes = classes if isinstance(classes, int) else len(classes)
    if n_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
    L = keras.layers
    image = keras.Input(config.image_shape, name="image")
    inputs = {"image": image}
    x = image
    if config.augment:
        # float32 whatever the policy: bf16 would quantise 0-255 pixels to steps of 1-2.
        x = ImageAugment(flip=config.flip, max_shift=config.max_shift,
                         max_rotation=config.max_rotation, zoom=config.zoom,
                         brightness=config.brightness, contrast=config.contrast, erase=config.erase,
                         dtype="float32", name="augment")(x)
    if config.crop and config.crop < config.input_size:  # a static slice: exports to ONNX/TFLite as is
        lo = (config.input_size - config.crop) // 2
        hi = config.input_size - config.crop - lo
        x = L.Cropping2D(((lo, hi), (lo, hi)), name="crop")(x)
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)  # [-1, 1]

    def attention(t):
        return SelfAttention2D(config.attention_reduction, name="attention")(t)

    if config.backbone in APPLICATIONS:
        x = _application(config, x)
        if config.attention:
            x = attention(x)
    else:
        block = _vgg_block if config.backbone == "vgg" else _resnet_block
        if config.backbone == "resnet":
            x = _conv_bn(x, config.width, 3, 1, "stem")
        at = config.attention_after % config.depth
        for i in range(config.depth):
            x = block(x, config.width * 2 ** min(i, 3), f"block{i}")
            if config.attention and i == at:
                x = attention(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    if config.geometry:
        geometry = keras.Input((config.resolved_geometry_dim(),), name="geometry")
        inputs["geometry"] = geometry
        g = L.Dense(config.geometry_units, activation="relu", name="geometry_dense1")(geometry)
        g = L.Dense(config.geometry_units, activation="relu", name="geometry_dense2")(g)
        x = L.Concatenate(name="fuse_geometry")([x, g])
    if config.dropout:
        x = L.Dropout(config.dropout, name="dropout")(x)
    x = L.Dense(config.embedding_dim, activation="relu", name="embedding")(x)
    out = L.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, out, name=f"face_{config.backbone}")


def _conv_bn(x, filters, kernel, stride, name, activation=True):
    import keras

    L = keras.layers
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                 name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.Activation("relu", name=f"{name}_relu")(x) if activation else x


def _vgg_block(x, filters, name):
    """Two 3x3 conv-BN-ReLU, then 2x2 max pooling."""
    import keras

    x = _conv_bn(x, filters, 3, 1, f"{name}a")
    x = _conv_bn(x, filters, 3, 1, f"{name}b")
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _resnet_block(x, filters, name):
    """Basic residual block with stride 2 (projection shortcut)."""
    import keras

    L = keras.layers
    shortcut = _conv_bn(x, filters, 1, 2, f"{name}_proj", activation=False)
    y = _conv_bn(x, filters, 3, 2, f"{name}a")
    y = _conv_bn(y, filters, 3, 1, f"{name}b", activation=False)
    y = L.Add(name=f"{name}_add")([shortcut, y])
    return L.Activation("relu", name=f"{name}_out")(y)


def _application(config: FaceModelConfig, x):
    """A keras.applications backbone (random init, no download) as one nested functional layer."""
    import keras

    if config.channels == 1:  # the applications expect three channels
        x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    shape = (int(x.shape[1]), int(x.shape[2]), 3)  # after the model's centre crop, if it has one
    if config.backbone == "mobilenetv3small":
        net = keras.applications.MobileNetV3Small(
            input_shape=shape, include_top=False, weights=None, include_preprocessing=False)
    else:
        net = keras.applications.EfficientNetV2B0(
            input_shape=shape, include_top=False, weights=None, include_preprocessing=False)
    return net(x)
