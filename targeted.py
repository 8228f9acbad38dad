import numpy as np, tifffile
import napari_lgg_unet.engine.corrections as C
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.postprocess import PostprocessConfig
img = tifffile.imread('/work/main/src/napari_lgg_unet/samples/TCGA_CS_6665_20010817_image.tif')[10:14]
model = load_model('default')
Z, H, W = img.shape[:3]
prob = np.zeros((Z, H, W), np.float32)
prob[1:3, 20:40, 20:40] = 0.9      # L: 800 voxels, the automatic tumour
prob[1:3, 100:110, 100:110] = 0.9  # S: 200 voxels, dropped by keep-largest
def grow_S(scan, old, slices, clicks, centre, window, options, precision):
    new = old.copy(); new[:, 100:140, 100:140] = np.maximum(new[:, 100:140, 100:140], 0.9)  # S grows to 1600 voxels
    return new
C._recompute_near = grow_S
cfg = PostprocessConfig(threshold=0.5, keep_largest=True)
s = C.CorrectionSession(model, img, C.SegmentOptions(postprocess=cfg), rgb=True, probability=prob)
print('automatic: L', s.mask[1, 30, 30], 'S', s.mask[1, 105, 105], 'sum', s.mask.sum())
s.click(1, 139, 145, positive=True)   # a tumour click just beside S (below threshold there after the click)
print('after + click: L', s.mask[1, 30, 30], 'S', s.mask[1, 105, 105], 'sum', s.mask.sum())
s.set_postprocess(cfg)  # the same clean-up again
print('after set_postprocess(same): L', s.mask[1, 30, 30], 'S', s.mask[1, 105, 105], 'sum', s.mask.sum())
