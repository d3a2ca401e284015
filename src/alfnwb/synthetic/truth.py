"""The ground truth :func:`~alfnwb.synthetic.write_cache` returns: what it wrote, where."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SynthSorting:
    """Ground truth of one spike sorting run, as written to its ALF collection."""

    sorter: str
    revision: str
    collection: str
    default: bool
    spikes: dict
    clusters: dict


@dataclass
class SynthProbe:
    """Ground truth of one synthetic insertion."""

    pid: str
    eid: str
    name: str
    layout: str
    histology: str
    channels: dict  # localCoordinates, rawInd, shank, mlapdv (um), atlas_id
    sortings: list = field(default_factory=list)
    clock_drift: float = 0.0  # spikes.times = spikes.samples / FS * (1 + clock_drift) + clock_offset
    clock_offset: float = 0.0  # s
    raw_path: Path | None = None  # the raw AP band .ap.cbin (with .ch and .meta beside), when written

    @property
    def default_sorting(self) -> SynthSorting:
        """The sorting a loader picks by default: default revision, iblsorter > pykilosort > Kilosort 2.5."""
        rank = {'iblsorter': 0, 'pykilosort': 1, '': 2}
        defaults = [s for s in self.sortings if s.default]
        return min(defaults, key=lambda s: rank.get(s.sorter, 3))


@dataclass
class SynthSession:
    """Ground truth of one synthetic session."""

    eid: str
    lab: str
    subject: str
    date: datetime.date
    number: int
    path: Path
    probes: list = field(default_factory=list)
    trials: dict | None = None  # the trials object written (alf/_ibl_trials.*), None without a task


@dataclass
class SynthCache:
    """What :func:`~alfnwb.synthetic.write_cache` wrote."""

    cache_dir: Path
    sessions: list

    @property
    def probes(self) -> list:
        """All insertions of all sessions."""
        return [p for s in self.sessions for p in s.probes]

    @property
    def pids(self) -> list:
        return [p.pid for p in self.probes]

    @property
    def eids(self) -> list:
        return [s.eid for s in self.sessions]

    def probe(self, histology: str | None = None, layout: str | None = None) -> SynthProbe:
        """First insertion matching a histology level and/or layout."""
        for p in self.probes:
            if (histology is None or p.histology == histology) and (layout is None or p.layout == layout):
                return p
        raise KeyError(f'no synthetic insertion with histology={histology} layout={layout}')
