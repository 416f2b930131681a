from mlops_course.course import doctor


def test_all_checks_pass_here():
    results = doctor.run_checks()
    assert [r.name for r in results][:2] == ["python", "kernel"]
    failed = [str(r) for r in results if not r.ok]
    assert not failed, failed


def test_failures_say_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(doctor.sys, "executable", str(tmp_path / "python"))
    result = doctor.check_tool("dvc")
    assert not result.ok and "make" in result.fix and "fix:" in str(result)
    monkeypatch.setenv("MLOPS_COURSE_DATA", str(tmp_path))
    data_result = doctor.check_data()
    assert not data_result.ok and "git checkout" in data_result.fix
    monkeypatch.setattr(doctor, "MIN_PYTHON", (9, 0))
    assert not doctor.check_python().ok


def test_missing_monitoring_tools_say_how_to_install(monkeypatch):
    from mlops_course import prometheus_stack

    monkeypatch.setattr(prometheus_stack, "find_binary", lambda names: None)
    results = {r.name: r for r in doctor.monitoring_checks()}
    assert set(results) == {"prometheus", "prometheus-alertmanager"}
    assert not any(r.ok for r in results.values())
    assert "apt-get install prometheus`" in results["prometheus"].fix and "brew" in results["prometheus"].fix
    assert "brew install alertmanager" in str(results["prometheus-alertmanager"])
