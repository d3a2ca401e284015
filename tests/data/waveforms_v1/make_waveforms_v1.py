"""Run once (not a test; needs ibl-neuropixel 1.3.2 unpacked, e.g. `pip download --no-deps ibl-neuropixel==1.3.2`): IBL's per-cluster (version 1) waveform writer, ibl-neuropixel 1.3.2's extract_wfs_cbin,
on probe00 of write_cache(seed=11, sessions=1, n_units=12, duration=3.0, raw=True)."""
import sys
from pathlib import Path
import numpy as np
import one.alf.path
sys.modules['one.alf.files'] = one.alf.path  # ibl-neuropixel 1.3.2 imports ONE 2's module name
sys.path.insert(0, '/tmp/wfx/old/v1.3.2')
import ibldsp.waveform_extraction as we
assert '1.3.2' in we.__file__
import pandas as pd
from one.api import One
one = One(cache_dir='/tmp/wfx/cache2', mode='local')
eid = str(one.search()[0])
raw = sorted(Path('/tmp/wfx/cache2').rglob('*imec0.ap.cbin'))[0]
t = one.load_object(eid, 'spikes', collection='alf/probe00/iblsorter')
c = one.load_object(eid, 'clusters', collection='alf/probe00/iblsorter')
out = Path('/tmp/wfx/v1out'); out.mkdir(exist_ok=True)
we.extract_wfs_cbin(raw, out, t['samples'], t['clusters'], c['channels'][t['clusters']], max_wf=8, n_jobs=1,
                    preprocess_steps=['phase_shift', 'butterworth', 'car'], seed=0, chunksize_samples=16256)
print(sorted(out.iterdir()))
