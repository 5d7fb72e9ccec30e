#!/bin/sh
# Prints its stdin (the task's detail) wrapped as {"input": ...}.
printf '{"input": '
cat
printf ', "job": "%s"}\n' "$TASKBRIDGE_JOB"
