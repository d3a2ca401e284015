"""The task of a synthetic session: an IBL-like ``trials`` object and the stimulus responses of units.

Trials follow IBL's biased choice world (``_iblrig_tasks_ephysChoiceWorld``): 90 unbiased trials
(``probabilityLeft`` 0.5), then blocks of 20-100 trials alternating 0.2 and 0.8; the stimulus is on
the left with probability ``probabilityLeft`` at a contrast of 0, 0.0625, 0.125, 0.25 or 1 (the
other side's contrast is NaN, as in IBL); choices follow a psychometric curve biased by the block
(``choice`` 1 for a stimulus on the left, -1 on the right when correct, 0 for a no-go), with
log-normal reaction times. As in real sessions, a few event times are NaN (about 3%, at least one
per session: a photodiode front missed, ``stimOn_times``; a movement not detected,
``firstMovement_times``).

It is saved as current IBL sessions hold it (ibllib's trial extractors): ``alf/_ibl_trials.table.pqt``
(intervals, goCue_times, response_times, choice, stimOn_times, contrastLeft, contrastRight,
feedback_times, feedbackType, rewardVolume, probabilityLeft, firstMovement_times) and separate
``_ibl_trials.<attribute>.npy`` files (stimOff_times, goCueTrigger_times, stimOnTrigger_times,
quiescencePeriod), on the session's main clock, the clock of ``spikes.times``.

Units whose peak channel is in a region of :data:`RESPONSIVE_REGIONS` (Beryl) respond to the
stimulus: after ``stimOn_times`` they fire :data:`EVOKED_SPIKES` extra spikes on average at full
contrast, scaled by the square root of the contrast (none at contrast 0), 40-250 ms after onset;
clusters without spikes stay silent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Beryl regions whose units respond to the stimulus (the others do not).
RESPONSIVE_REGIONS = ('VISa', 'VISp', 'LP')
#: Mean number of evoked spikes per trial at contrast 1 (scaled by sqrt(contrast)).
EVOKED_SPIKES = 4.0
#: Latency of the first evoked spikes after stimulus onset, s.
EVOKED_LATENCY = 0.04
#: Dead time kept between spikes of a unit (as the spontaneous trains), s.
DEAD_TIME = 0.002
CONTRASTS = (0.0, 0.0625, 0.125, 0.25, 1.0)
#: The table's attributes (in ibllib's order), then those saved as separate files.
TABLE_ATTRIBUTES = ('intervals', 'goCue_times', 'response_times', 'choice', 'stimOn_times', 'contrastLeft',
                    'contrastRight', 'feedback_times', 'feedbackType', 'rewardVolume', 'probabilityLeft',
                    'firstMovement_times')
NO_GO_TIMEOUT = 60.0


def _blocks(n: int, rng: np.random.Generator) -> np.ndarray:
    """``probabilityLeft`` of each trial: 90 trials at 0.5, then blocks of 20-100 alternating 0.2/0.8."""
    p = np.full(n, 0.5)
    i, side = 90, rng.choice([0.2, 0.8])
    while i < n:
        length = int(np.clip(20 + rng.exponential(40), 20, 100))
        p[i:i + length] = side
        i, side = i + length, 1.0 - side
    return p


def _choices(p_left: np.ndarray, left: np.ndarray, contrast: np.ndarray, rng: np.random.Generator):
    """Choice (1 left, -1 right, 0 no-go) from a psychometric curve shifted towards the block's side."""
    signed = np.where(left, -contrast, contrast)  # > 0: evidence for the right
    bias = (0.5 - p_left) * 1.2  # a left block pushes choices left
    p_right = 0.1 + 0.8 / (1 + np.exp(-(signed * 8 + bias)))
    choice = np.where(rng.uniform(size=left.size) < p_right, -1, 1)
    choice[rng.uniform(size=left.size) < 0.005] = 0  # no-go: the response times out after 60 s
    return choice


def task_trials(duration: float, rng: np.random.Generator) -> dict:
    """An IBL-like trials object filling a session (all times on the session's main clock, s).

    Parameters
    ----------
    duration : float
        Session length, s: trials start at 2 s and the last ends before ``duration - 1``.
    rng : numpy.random.Generator
        Every draw of the task.

    Returns
    -------
    dict
        ALF attribute -> array: ``intervals`` (n x 2) and the attributes of :data:`TABLE_ATTRIBUTES`,
        ``stimOff_times``, ``goCueTrigger_times``, ``stimOnTrigger_times``, ``quiescencePeriod``.
    """
    n_max = int(duration / 2) + 1
    quiescence = rng.uniform(0.4, 0.7, n_max)
    p_left = _blocks(n_max, rng)
    left = rng.uniform(size=n_max) < p_left
    contrast = rng.choice(CONTRASTS, n_max)
    choice = _choices(p_left, left, contrast, rng)
    correct = np.where(left, 1, -1) == choice
    rt = np.where(choice == 0, np.nan, np.clip(rng.lognormal(np.log(0.3), 0.6, n_max), 0.08, 20))
    move_time = rng.uniform(0.1, 0.4, n_max)
    response = np.where(choice == 0, NO_GO_TIMEOUT, rt + move_time)  # after stimulus onset
    stop_after_feedback = np.where(correct, 1.0, 2.0) + 0.5  # stimulus stays 1 s (2 s on errors), then ITI
    length = 0.05 + quiescence + response + stop_after_feedback
    start = 2.0 + np.r_[0, np.cumsum(length)[:-1]]
    n = int(np.searchsorted(start + length, duration - 1.0, side='right'))
    start = start[:n]
    stim_trigger = start + 0.05 + quiescence[:n]
    stim_on = stim_trigger + rng.uniform(0.01, 0.03, n)
    resp = stim_on + response[:n]
    feedback = resp + rng.uniform(1e-4, 1e-3, n)
    out = {
        'intervals': np.c_[start, feedback + stop_after_feedback[:n]],
        'goCue_times': stim_on + rng.uniform(1e-4, 5e-4, n), 'response_times': resp,
        'choice': choice[:n].astype(np.float64), 'stimOn_times': stim_on,
        'contrastLeft': np.where(left[:n], contrast[:n], np.nan),
        'contrastRight': np.where(left[:n], np.nan, contrast[:n]),
        'feedback_times': feedback, 'feedbackType': np.where(correct[:n], 1.0, -1.0),
        'rewardVolume': np.where(correct[:n], 1.5, 0.0), 'probabilityLeft': p_left[:n],
        'firstMovement_times': stim_on + rt[:n],
        'stimOff_times': feedback + stop_after_feedback[:n] - 0.5,
        'goCueTrigger_times': stim_trigger, 'stimOnTrigger_times': stim_trigger,
        'quiescencePeriod': quiescence[:n],
    }
    for key in ('stimOn_times', 'firstMovement_times'):  # photodiode fronts missed, movements not detected
        out[key][rng.choice(n, size=min(n, max(1, rng.binomial(n, 0.03))), replace=False)] = np.nan
    return out


def save_trials(folder: Path, trials: dict) -> list[Path]:
    """Save a trials object as IBL sessions hold it: ``_ibl_trials.table.pqt`` plus ``.npy`` attributes.

    The table is written as ibllib's trial extractors write it (``AlfBunch.to_df().to_parquet``),
    the other attributes with ONE's ``save_object_npy``.

    Parameters
    ----------
    folder : pathlib.Path
        The session's ``alf`` collection (created if needed).
    trials : dict
        From :func:`task_trials`.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from one.alf.io import AlfBunch, save_object_npy

    folder.mkdir(parents=True, exist_ok=True)
    table = AlfBunch({k: trials[k] for k in TABLE_ATTRIBUTES}).to_df()
    path = folder / '_ibl_trials.table.pqt'
    table.to_parquet(path)
    rest = {k: v for k, v in trials.items() if k not in TABLE_ATTRIBUTES}
    return [path] + [Path(p) for p in save_object_npy(folder, rest, 'trials', namespace='ibl')]


def responsive_clusters(peak_channels: np.ndarray, atlas_id: np.ndarray) -> np.ndarray:
    """Clusters whose peak channel is in a region of :data:`RESPONSIVE_REGIONS` (Beryl)."""
    from iblatlas.regions import BrainRegions

    br = BrainRegions()
    beryl = br.id2acronym(br.remap(np.asarray(atlas_id)[peak_channels], source_map='Allen', target_map='Beryl'))
    return np.flatnonzero(np.isin(beryl, RESPONSIVE_REGIONS))


def evoked_spikes(units: np.ndarray, stim_on: np.ndarray, contrast: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Spikes evoked by the stimulus in responsive units (all trials and units at once).

    Parameters
    ----------
    units : numpy.ndarray
        The responsive clusters.
    stim_on : numpy.ndarray
        Stimulus onsets, s (NaN: no stimulus detected; those trials still evoke no spike here).
    contrast : numpy.ndarray
        Each trial's contrast (0..1).
    rng : numpy.random.Generator
        The evoked spikes' own stream.

    Returns
    -------
    times : numpy.ndarray
        Spike times on the session clock, unsorted.
    clusters : numpy.ndarray
        The unit of each.
    """
    ok = np.isfinite(stim_on)
    stim_on, contrast = stim_on[ok], contrast[ok]
    counts = rng.poisson(EVOKED_SPIKES * np.sqrt(contrast)[None, :], (units.size, stim_on.size))
    unit = np.repeat(np.repeat(units, stim_on.size), counts.ravel())
    onset = np.repeat(np.tile(stim_on, units.size), counts.ravel())
    latency = EVOKED_LATENCY + np.minimum(rng.gamma(2.0, 0.035, onset.size), 0.21)
    return onset + latency, unit



def add_evoked(spikes: dict, evoked: tuple, peak: np.ndarray, atlas_id: np.ndarray, unit_amp: np.ndarray,
               unit_depth: np.ndarray, clock: tuple[float, float], rng: np.random.Generator) -> dict:
    """A sorting's spikes with the evoked spikes of its responsive units merged in, sorted by sample.

    Parameters
    ----------
    spikes : dict
        ``samples``, ``clusters``, ``amps``, ``depths`` of the spontaneous spikes.
    evoked : (numpy.ndarray, numpy.ndarray)
        Stimulus onsets (session clock, s) and contrasts of the trials.
    peak, atlas_id : numpy.ndarray
        Each cluster's peak channel; each channel's Allen id.
    unit_amp, unit_depth : numpy.ndarray
        Each cluster's amplitude (V) and depth (um).
    clock : (float, float)
        The probe's drift and offset: samples = (t - offset) / (1 + drift) * FS.
    rng : numpy.random.Generator
        The evoked spikes' own stream (the spontaneous spikes are unchanged).

    Returns
    -------
    dict
        ``samples``, ``clusters``, ``amps``, ``depths``: spontaneous and evoked, sorted (ties by unit).
    """
    from .alf import FS

    units = np.intersect1d(responsive_clusters(peak, atlas_id), spikes['clusters'])  # silent clusters stay silent
    t, clu = evoked_spikes(units, *evoked, rng)
    drift, offset = clock
    samples = np.round((t - offset) / (1.0 + drift) * FS).astype(np.int64)
    amps = unit_amp[clu] * rng.lognormal(0.0, 0.15, clu.size)
    depths = (unit_depth[clu] + rng.normal(0, 6.0, clu.size)).astype(spikes['depths'].dtype)
    out = {'samples': np.r_[spikes['samples'], samples], 'clusters': np.r_[spikes['clusters'], clu],
           'amps': np.r_[spikes['amps'], amps], 'depths': np.r_[spikes['depths'], depths]}
    keep = _refractory(out['samples'], out['clusters'], np.r_[np.zeros(spikes['samples'].size, bool),
                                                              np.ones(samples.size, bool)], int(DEAD_TIME * FS))
    order = np.lexsort((out['clusters'][keep], out['samples'][keep]))
    return {k: v[keep][order] for k, v in out.items()}


def _refractory(samples: np.ndarray, clusters: np.ndarray, evoked: np.ndarray, dead: int) -> np.ndarray:
    """Spikes kept: evoked spikes within ``dead`` samples of another spike of their unit are dropped.

    The spontaneous trains already keep a dead time; an evoked spike kept is at least ``dead`` from
    both its neighbours, so every unit's kept train keeps it too (one vectorised pass).
    """
    order = np.lexsort((samples, clusters))
    s, c, e = samples[order], clusters[order], evoked[order]
    close = (np.diff(s) < dead) & (c[1:] == c[:-1])
    drop = e & (np.r_[False, close] | np.r_[close, False])
    keep = np.ones(samples.size, bool)
    keep[order[drop]] = False
    return keep
