"""The pure side of every assurance activity: parameters, assessment, evidence content.

One package per activity. Its ``__init__`` declares the activity's facts (``SPECS``, read by
:mod:`qfs_assets.registry`); ``params.py`` its parameters (defaults and bounds, written once);
``assess.py`` the assessment that turns export partitions into an
:class:`~qfs_assets.evidence.model.ActivityResult`. Nothing here imports Dagster: the
orchestration of the same activity lives in ``qfs_assets/defs/<activity>/``.
"""
