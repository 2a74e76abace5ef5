"""Makes the photo fixtures of tests/suite/photo.rs with Pillow (13.0.0 when they were made):
small images in PNG and JPEG, Pillow's decoding of the JPEGs, Pillow's bilinear resizes, and
torchvision's ImageNet evaluation transform (Resize(256), CenterCrop(224), ToTensor,
Normalize) written out in numpy-free Python from Pillow's resize. Run from this directory."""
import json, math
from PIL import Image

W, H = 37, 23
img = Image.new("RGB", (W, H))
img.putdata([((x * 7 + y * 3) % 256, (x * y * 5 + 40) % 256, int(127.5 + 127 * math.sin(x / 3.0 + y / 5.0)))
             for y in range(H) for x in range(W)])
img.save("pattern.png")
img.convert("L").save("pattern_gray.png")
rgba = img.copy(); rgba.putalpha(200); rgba.save("pattern_rgba.png")
img.save("pattern.jpg", quality=92)
img.convert("L").save("pattern_gray.jpg", quality=92)

def pixels(im):
    return [v for p in im.convert("RGB").getdata() for v in p]

def resize_shorter(im, size):
    w, h = im.size
    if w <= h:
        return im.resize((size, size * h // w), Image.BILINEAR)
    return im.resize((size * w // h, size), Image.BILINEAR)

out = {}
for name, size in [("down", 16), ("up", 40)]:
    r = resize_shorter(img, size)
    out["resize_" + name] = {"shorter": size, "width": r.size[0], "height": r.size[1], "rgb": pixels(r)}
for name in ["pattern.jpg", "pattern_gray.jpg"]:
    out[name] = pixels(Image.open(name))

# torchvision's evaluation transform, as its transforms do it on a PIL image.
r = resize_shorter(img, 256)
w, h = r.size
top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
crop = r.crop((left, top, left + 224, top + 224))
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
px = list(crop.getdata())
sample = []
for i in range(0, 3 * 224 * 224, 997):
    c, rest = divmod(i, 224 * 224)
    sample.append([i, (px[rest][c] / 255.0 - mean[c]) / std[c]])
out["imagenet_224"] = sample
json.dump(out, open("pillow.json", "w"))
