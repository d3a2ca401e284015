"""spikeinterface-gui on the demo session's read-back analyzer, saved as a picture (no screen needed).

Runs ``alfnwb demo --raw`` (the demo session, 20 s long, whose probe00 has a raw AP band and IBL's
extracted waveforms ``waveforms.*``), opens spikeinterface-gui's main window on
``alfnwb.read_sorting_analyzer(file, 'probe00')`` with Qt's offscreen platform, and saves it:

    python examples/spikeinterface_gui_screenshot.py --output /tmp/gui-demo --png docs/spikeinterface_gui.png

Needs ``pip install "alfnwb[test]"`` (spikeinterface-gui and PyQt5).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--output', default=str(Path(tempfile.gettempdir()) / 'alfnwb-gui-demo'),
                   help='folder of the demo cache and NWB file')
    p.add_argument('--png', default='spikeinterface_gui.png', help='picture to write')
    args = p.parse_args(argv)
    os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
    os.environ.setdefault('XDG_RUNTIME_DIR', tempfile.mkdtemp())

    import alfnwb
    from alfnwb.cli import main as alfnwb_main

    if alfnwb_main(['--quiet', 'demo', '--raw', '--output', args.output]) != 0:
        return 1
    nwb = next(Path(args.output).glob('*.nwb'))
    analyzer = alfnwb.read_sorting_analyzer(nwb, 'probe00')
    print('extensions:', ', '.join(analyzer.get_loaded_extension_names()))

    from spikeinterface_gui import run_mainwindow

    win = run_mainwindow(analyzer, mode='desktop', with_traces=False, start_app=False)
    win.resize(1600, 1000)
    from PyQt5.QtWidgets import QApplication

    for _ in range(20):  # let the views draw
        QApplication.processEvents()
    if not win.grab().save(args.png):
        print(f'could not write {args.png}', file=sys.stderr)
        return 1
    print(f'wrote {args.png} (views: {", ".join(sorted(win.views))})')
    win.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
