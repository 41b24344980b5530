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
