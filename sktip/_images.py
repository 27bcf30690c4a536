"""Turn whatever a user passes as an image into an RGB ``PIL.Image``.

Accepted items are file paths (``str`` or ``os.PathLike``), ``PIL.Image``
objects and ``uint8``/``uint16`` arrays of shape (H, W), (H, W, 1), (H, W, 3)
or (H, W, 4). Every failure is reported as an
:class:`~sktip.exceptions.ImageLoadError` naming the item's position and
source.
"""

import hashlib
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sktip.exceptions import ImageLoadError

# Alpha is composited on white, the way image viewers and browsers show a
# transparent picture; dropping alpha instead exposes whatever colour the
# encoder left under transparent pixels (often black).
_BACKGROUND = (255, 255, 255)


def describe_source(item):
    """Return a short, printable description of an image item."""
    if isinstance(item, str | os.PathLike):
        # str() turns NumPy's str subclass, whose repr is np.str_('...'),
        # into a plain path.
        return str(os.fspath(item))
    if isinstance(item, Image.Image):
        return f"PIL image (mode={item.mode}, size={item.size})"
    if isinstance(item, np.ndarray):
        return f"array (shape={item.shape}, dtype={item.dtype})"
    return f"object of type {type(item).__name__}"


def read_item(item, index):
    """Read an item into memory without decoding it.

    Returns the file bytes for a path and the item itself otherwise, so that
    the content can be hashed and decoded from one read.
    """
    if isinstance(item, str | os.PathLike):
        path = os.fspath(item)
        try:
            with open(path, "rb") as file:
                return file.read()
        except IsADirectoryError:
            raise _error(index, item, "is a directory, not an image file") from None
        except FileNotFoundError:
            where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
            raise _error(index, item, f"is not there: no such file{where}") from None
        except OSError as exc:
            raise _error(index, item, f"cannot be read ({exc})") from exc
    if isinstance(item, Image.Image | np.ndarray):
        return item
    raise _error(
        index,
        item,
        "is not an image; expected a file path, a PIL image or a uint8 array",
    )


def content_key(data):
    """Digest of an image's content, as returned by :func:`read_item`.

    Two items with the same key decode to the same picture: files are
    hashed by their bytes, PIL images and arrays by their pixels.
    """
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(data, bytes):
        digest.update(b"file:")
        digest.update(data)
    elif isinstance(data, Image.Image):
        digest.update(f"pil:{data.mode}:{data.size}:".encode())
        digest.update(data.tobytes())
        # A palette image's pixels are indices: its palette and transparent
        # index decide the picture too.
        extra = (data.getpalette(), data.info.get("transparency"))
        digest.update(repr(extra).encode())
    else:
        array = np.ascontiguousarray(data)
        digest.update(f"array:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def decode_rgb(data, index, item):
    """Decode what :func:`read_item` returned into an RGB ``PIL.Image``.

    Parameters
    ----------
    data : bytes, PIL.Image.Image or ndarray
        The item's content.
    index : int
        Position of the item in the caller's input, for error messages.
    item : object
        The original item, for error messages.

    Returns
    -------
    image : PIL.Image.Image
        An image in mode ``"RGB"`` with EXIF orientation applied.
    """
    if isinstance(data, bytes):
        image = _open_file(data, index, item)
    elif isinstance(data, Image.Image):
        image = data
    else:
        image = _array_to_image(data, index, item)

    try:
        image = _to_rgb(_to_upright_first_frame(image))
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise _error(index, item, f"cannot be decoded ({exc})") from exc
    if image.width == 0 or image.height == 0:
        # Resizing and cropping divide by the size; refuse here so that the
        # caller learns which item it was.
        raise _error(index, item, f"has no pixels (size {image.size})")
    return image


def load_rgb(item, index=0):
    """Read and decode one item into an RGB ``PIL.Image``."""
    return decode_rgb(read_item(item, index), index, item)


def _open_file(data, index, item):
    if not data:
        raise _error(index, item, "is an empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its pixel limit and twice that
            # limit; a picture that large is refused like a larger one.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _error(
            index,
            item,
            f"exceeds Pillow's decompression-bomb limit ({exc}); raise "
            "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted",
        ) from None
    except UnidentifiedImageError:
        raise _error(index, item, "is not an image file Pillow can identify") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _error(index, item, f"is truncated or corrupt ({exc})") from None
    return image


def _array_to_image(array, index, item):
    # Compare kind and size rather than the dtype itself, which would refuse
    # big-endian uint16 (as read from FITS or some TIFF readers).
    if array.dtype.kind != "u" or array.dtype.itemsize not in (1, 2):
        raise _error(
            index,
            item,
            "has an unsupported dtype; expected uint8 (0-255) or uint16 "
            "(0-65535) pixels",
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        if array.dtype.itemsize == 2:
            array = _sixteen_to_eight_bits(array)
        return Image.fromarray(np.ascontiguousarray(array), mode="L")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.dtype.itemsize == 2:
            array = _sixteen_to_eight_bits(array)
        mode = "RGB" if array.shape[2] == 3 else "RGBA"
        return Image.fromarray(np.ascontiguousarray(array), mode=mode)
    raise _error(
        index,
        item,
        "has an unsupported shape; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)",
    )


def _to_upright_first_frame(image):
    if getattr(image, "n_frames", 1) > 1:
        # Put the caller's image back on the frame it showed.
        shown = image.tell()
        image.seek(0)
        first = image.copy()
        image.seek(shown)
        image = first
    return ImageOps.exif_transpose(image)


def _to_rgb(image):
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(image)
    return image.convert("RGB")


def _high_depth_to_rgb(image):
    # Image.convert("RGB") clips 16-bit and float pixels at 255, which turns
    # most of a 16-bit photograph white; rescale to 8 bits instead.
    pixels = np.asarray(image)
    if image.mode == "F":
        low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        if 0.0 <= low and high <= 1.0:
            scaled = pixels * 255.0
        else:
            scaled = (pixels - low) * (255.0 / max(high - low, 1e-12))
        eight = np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)
    elif pixels.size and pixels.max() <= 255 and image.mode == "I":
        eight = pixels.astype(np.uint8)
    else:
        eight = _sixteen_to_eight_bits(np.clip(pixels, 0, 65535))
    return Image.fromarray(eight, mode="L").convert("RGB")


def _sixteen_to_eight_bits(pixels):
    # 65535 / 257 == 255 exactly, so the full 16-bit range maps onto 0-255.
    return np.round(pixels.astype(np.float64) / 257.0).astype(np.uint8)


def _error(index, item, reason):
    source = describe_source(item)
    message = f"image at index {index} ({source!r}) {reason}"
    return ImageLoadError(message, index=index, source=source)
