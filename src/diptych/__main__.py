from diptych.cli import run

run()
