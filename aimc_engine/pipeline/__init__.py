"""Pipeline training: stages, schedules as data, the executor and the timeline."""
