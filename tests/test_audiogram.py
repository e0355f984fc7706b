import json

import numpy as np
import pytest

from rtha.audiogram import PRESETS, Audiogram, AudiogramError, Listener, get_listener, load_listeners, save_listeners


def test_interpolation_is_linear_in_log_frequency_with_ends_held():
    a = Audiogram([500, 2000], [10, 50])
    assert a.at([1000])[0] == pytest.approx(30.0)  # geometric midpoint
    assert a.at([100, 8000]).tolist() == [10.0, 50.0]


@pytest.mark.parametrize(
    "freqs, levels, match",
    [
        ([1000, 500], [0, 0], "strictly increasing"),
        ([500, 1000], [0, np.nan], "NaN"),
        ([500, 1000], [0, 130], "outside"),
        ([500, 1000], [0, -20], "outside"),
        ([500, 1000, 2000], [0, 0], "one level per frequency"),
        ([], [], "no frequencies"),
    ],
)
def test_invalid_audiograms_are_rejected(freqs, levels, match):
    with pytest.raises(AudiogramError, match=match):
        Audiogram(freqs, levels)


def test_presets_exist_for_both_ears():
    for name in ("normal", "mild", "moderate", "severe"):
        listener = get_listener(name)
        assert listener.left == listener.right
        assert listener.name == name
    assert PRESETS["severe"].left.max_loss > PRESETS["mild"].left.max_loss


def test_clarity_listeners_round_trip(tmp_path):
    path = tmp_path / "listeners.json"
    listeners = {
        "L0001": Listener(Audiogram([250, 1000, 4000], [10, 20, 60]), Audiogram([250, 1000, 4000], [15, 25, 70]), "L0001")
    }
    save_listeners(listeners, path)
    raw = json.loads(path.read_text())
    assert raw["L0001"]["audiogram_levels_r"] == [15, 25, 70]
    assert load_listeners(path) == listeners
    assert get_listener("L0001", path).right.levels.tolist() == [15, 25, 70]


def test_listener_file_errors_name_the_file_and_problem(tmp_path):
    path = tmp_path / "listeners.json"
    with pytest.raises(AudiogramError, match="not found"):
        load_listeners(path)
    path.write_text("{not json")
    with pytest.raises(AudiogramError, match="not valid JSON"):
        load_listeners(path)
    path.write_text(json.dumps({"L1": {"audiogram_cfs": [250, 500]}}))
    with pytest.raises(AudiogramError, match="audiogram_levels_l"):
        load_listeners(path)
    path.write_text(json.dumps({"L1": {"audiogram_cfs": [500, 250], "audiogram_levels_l": [0, 0], "audiogram_levels_r": [0, 0]}}))
    with pytest.raises(AudiogramError, match="'L1'.*increasing"):
        load_listeners(path)
    save_listeners({"L1": PRESETS["mild"]}, path)
    with pytest.raises(AudiogramError, match="unknown listener 'L9'"):
        get_listener("L9", path)
    with pytest.raises(AudiogramError, match="unknown listener 'loud'"):
        get_listener("loud")


@pytest.mark.parametrize(
    "levels",
    [
        ["abc"] * 8,  # not numbers
        ["25"] * 8,  # numbers as strings
        [[25, 30]] * 8,  # nested: 16 numbers in 8 pairs
        [25, [30, 35], 40, 45, 50, 55, 60, 65],  # ragged nesting
        [True] * 8,
        None,
    ],
)
def test_listener_levels_that_are_not_a_flat_list_of_numbers_are_a_one_line_error(tmp_path, capsys, levels):
    from rtha.cli import main

    path = tmp_path / "listeners.json"
    entry = {"audiogram_cfs": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000], "audiogram_levels_r": [20] * 8}
    path.write_text(json.dumps({"L1": {**entry, "audiogram_levels_l": levels}}))
    with pytest.raises(AudiogramError, match="'L1'.*not a flat list of numbers"):
        load_listeners(path)
    # through a command: one line, exit 2
    import soundfile as sf

    sf.write(str(tmp_path / "in.wav"), np.zeros(1600, np.float32), 16000)
    assert main(["replay", str(tmp_path / "in.wav"), "--listeners", str(path), "--listener", "L1", "--no-enhancer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtha: error:") and "not a flat list of numbers" in err[0]


def test_a_listener_entry_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "listeners.json"
    path.write_text(json.dumps({"L1": [20, 30]}))
    with pytest.raises(AudiogramError, match="listener 'L1' is a list; expected an object"):
        load_listeners(path)
