"""Regenerates docs/example.jpg (the README picture) from the published legacy pairs in ../shared."""
import torch, numpy as np
torch.set_num_threads(1)
from PIL import Image
from exemplar_color import Colorizer
import os, pathlib
SHARED = pathlib.Path(os.environ.get('EXEMPLAR_COLOR_SHARED', pathlib.Path(__file__).resolve().parents[2] / 'shared'))
W = str(SHARED / 'weights/vgg19-torchvision-features-0-10.pth')
c = Colorizer(device='cpu', vgg_weights=W, levels=["relu3_1","relu2_1","relu1_1"])
D = str(SHARED / 'data/exemplar-pairs/legacy')
rows=[]
for i in (1, 3):
    r = c.colorize(f'{D}/in{i}.JPEG', f'{D}/ref{i}.JPEG')
    H=200
    def th(im): im=im.convert('RGB'); return im.resize((round(im.width*H/im.height), H), Image.LANCZOS)
    ims=[th(Image.open(f'{D}/in{i}.JPEG').convert('L')), th(Image.open(f'{D}/ref{i}.JPEG')), th(r.image), th(r.warped_image), th(r.confidence_image())]
    row=Image.new('RGB',(sum(x.width for x in ims)+4*len(ims),H),'white'); x=0
    for im in ims: row.paste(im,(x,0)); x+=im.width+4
    rows.append(row)
W_=max(r.width for r in rows); out=Image.new('RGB',(W_, sum(r.height+4 for r in rows)),'white'); y=0
for r in rows: out.paste(r,(0,y)); y+=r.height+4
out.save('str(pathlib.Path(__file__).with_name('example.jpg')), quality=88)
print(out.size)
