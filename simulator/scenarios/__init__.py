"""The demo scenarios of 000 §11, rehearsed against a running SafeRoll (SPEC §12, §15).

    presets  the scenarios' names, releases, rings and timings (DEMO, FAST)
    runner   ScenarioRunner: plays one scenario as a release manager, with a simulated fleet
    watch    how the runner follows its rollout: looking, and waiting with deadlines
    judge    whether the rollout ended as the scenario expects
    report   the text a run ends with

The release manager's REST calls are simulator.api.ReleaseManagerApi.
"""
