"""The pieces of a single-machine installation that decide without processes: the tooling's
settings, the home's configuration file, backup retention, log rotation, the crash-loop rule
and the systemd unit."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from leadflow_tools import backup
from leadflow_tools.home import Home, RunOptions
from leadflow_tools.stack import (
    CRASH_LOOP_EXITS,
    Child,
    ChildLog,
    CrashLoop,
    StackSupervisor,
    describe_exit,
)

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "leadflow.service"


def test_run_options_default_to_the_ports_of_make_run_and_no_scheduled_backup():
    options = RunOptions.from_env({})
    assert (options.pg_port, options.broker_port, options.port_offset) == (55432, 19092, 0)
    assert options.backup_interval == 0 and options.backup_keep == 7


def test_a_bad_tooling_variable_is_refused_naming_it():
    with pytest.raises(SystemExit, match="LEADFLOW_BACKUP_KEEP: must be at least 1"):
        RunOptions.from_env({"LEADFLOW_BACKUP_KEEP": "0"})
    with pytest.raises(SystemExit, match="LEADFLOW_PORT_OFFSET: not a whole number"):
        RunOptions.from_env({"LEADFLOW_PORT_OFFSET": "ten"})


def test_the_home_configuration_file_fills_in_what_the_environment_does_not_set(
    tmp_path, monkeypatch
):
    home = Home.resolve(tmp_path)
    home.create()
    home.env_file.write_text("LEADFLOW_LOG_LEVEL=DEBUG\nLEADFLOW_BACKUP_KEEP=3\n")
    monkeypatch.setenv("LEADFLOW_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("LEADFLOW_BACKUP_KEEP", raising=False)
    home.load_env()
    assert os.environ["LEADFLOW_LOG_LEVEL"] == "WARNING"
    assert os.environ["LEADFLOW_BACKUP_KEEP"] == "3"
    monkeypatch.delenv("LEADFLOW_BACKUP_KEEP")


def test_the_home_is_the_flag_then_leadflow_home_then_dot_leadflow(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path / "from-env"))
    assert Home.resolve(tmp_path / "flag").root == tmp_path / "flag"
    assert Home.resolve().root == tmp_path / "from-env"
    monkeypatch.delenv("LEADFLOW_HOME")
    assert Home.resolve().root == Path(".leadflow").resolve()


def test_retention_keeps_the_newest_backups_and_nothing_else_is_touched(tmp_path):
    names = [f"leadflow-2026120{d}T020000Z.dump" for d in range(1, 6)]
    for name in [*names, "notes.txt", "leadflow-20261203T020000Z.dump.part"]:
        (tmp_path / name).write_text("x")
    gone = backup.prune(tmp_path, 2)
    assert sorted(p.name for p in gone) == names[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*names[3:], "notes.txt", "leadflow-20261203T020000Z.dump.part"]
    )


def test_a_process_log_is_rotated_at_its_size_and_its_last_lines_are_kept(tmp_path):
    home = Home.resolve(tmp_path)
    home.create()
    log = ChildLog(home, "ingest", RunOptions(log_max_bytes=1024, log_backups=2))
    for n in range(200):
        log.write(f'{{"msg": "line {n}", "pad": "{"x" * 40}"}}')
    log.close()
    files = sorted(p.name for p in home.logs.iterdir())
    assert files == ["ingest.log", "ingest.log.1", "ingest.log.2"]
    assert all((home.logs / f).stat().st_size <= 1024 for f in files)
    assert "line 199" in (home.logs / "ingest.log").read_text()
    assert list(log.tail)[-1].startswith('{"msg": "line 199"')


def test_a_process_that_exits_waits_longer_each_time_then_stops_the_stack(tmp_path):
    home = Home.resolve(tmp_path)
    home.create()
    supervisor = StackSupervisor(home, RunOptions(), {})
    child = Child("scoring", launch=None, ready=None, log=ChildLog(home, "scoring", RunOptions()))
    child.log.write("address already in use")
    try:
        delays = []
        for n in range(CRASH_LOOP_EXITS - 1):
            supervisor._exited(child, "exit code 1", now=100.0 + n)
            delays.append(child.next_start - (100.0 + n))
            assert child.state == "restarting"
        assert delays == [0.5, 1.0, 2.0, 4.0]
        with pytest.raises(CrashLoop) as crash:
            supervisor._exited(child, "exit code 1", now=105.0)
        assert "scoring keeps crashing (5 exits within 60 s" in str(crash.value)
        assert "address already in use" in str(crash.value)
    finally:
        child.log.close()
        supervisor.stop_all()


def test_exits_older_than_the_window_do_not_count_towards_a_crash_loop(tmp_path):
    home = Home.resolve(tmp_path)
    home.create()
    supervisor = StackSupervisor(home, RunOptions(), {})
    child = Child("broker", launch=None, ready=None, log=ChildLog(home, "broker", RunOptions()))
    try:
        for n in range(CRASH_LOOP_EXITS * 2):
            supervisor._exited(child, describe_exit(-signal.SIGKILL), now=100.0 + 61 * n)
        assert child.state == "restarting" and child.last_exit == "killed by SIGKILL"
    finally:
        child.log.close()
        supervisor.stop_all()


def test_the_systemd_unit_runs_leadflow_run_with_its_home_and_stops_it_by_sigterm(tmp_path):
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(UNIT)
    service = unit["Service"]
    assert service["ExecStart"] == "/opt/leadflow/.venv/bin/leadflow run"
    assert service["Environment"] == "LEADFLOW_HOME=/var/lib/leadflow"
    assert service["WorkingDirectory"] == "/var/lib/leadflow"
    assert (service["KillMode"], service["KillSignal"]) == ("mixed", "SIGTERM")
    assert service["Restart"] == "on-failure"
    # What ExecStart runs exists in this checkout.
    executable = Path(sys.executable).with_name("leadflow")
    help_text = subprocess.run(
        [executable, "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--home" in help_text
    if shutil.which("systemd-analyze"):  # systemd's own check of the unit, where it is installed
        copy = tmp_path / "leadflow.service"
        copy.write_text(
            UNIT.read_text().replace("/opt/leadflow/.venv/bin/leadflow", str(executable))
        )
        verified = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True)
        assert verified.returncode == 0, verified.stderr.decode()
