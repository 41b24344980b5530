import torch

from selfsup.machine import cpu_name, machine_words


def test_cpu_name_reads_the_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n")
    assert cpu_name(info) == "AMD EPYC 7B13"


def test_a_cpu_name_without_a_model_number_gets_its_family_and_model(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
                    "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n")
    assert cpu_name(info) == "AMD EPYC (family 25 model 1)"


def test_cpu_name_without_cpuinfo_still_names_something(tmp_path):
    assert cpu_name(tmp_path / "absent") not in ("", None)


def test_machine_words_count_torch_threads():
    assert machine_words().endswith(f", {torch.get_num_threads()} threads")


def test_available_memory_is_the_least_of_the_kernels_and_the_cgroups(tmp_path):
    from selfsup.machine import available_memory

    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "cg"
    meminfo.write_text("MemTotal:       24683784 kB\nMemAvailable:   20000000 kB\n")
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(meminfo, cgroup) == 20000000 * 1024
    (cgroup / "memory.max").write_text(str(8 * 1024**3))
    (cgroup / "memory.current").write_text(str(3 * 1024**3))
    assert available_memory(meminfo, cgroup) == 5 * 1024**3


def test_resources_are_said_in_words():
    from selfsup.machine import GIB, Resources

    assert Resources(2, 24 * GIB).words() == "2 cores, 24.0 GiB available, no GPU"
    assert Resources(16, 100 * GIB, "NVIDIA H100", 80 * GIB).words() == \
        "16 cores, 100.0 GiB available, NVIDIA H100 (80.0 GiB)"
