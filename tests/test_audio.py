"""The neutral audio front end and the FSDD loader, on synthetic audio (no dataset, no framework)."""

import numpy as np
import pytest

from audio_helpers import tone, tone_digits, write_wav
from diptych.augment_specs import AugmentSpec
from diptych.data import audio, fsdd, load_dataset
from diptych.data.audio import FrontEnd
from diptych.data.augment import draw
from diptych.errors import DataError, DiptychError

FE = FrontEnd()


def test_log_mel_of_a_tone_matches_the_hand_computed_spectrum():
    """A cosine on FFT bin k, Hann-windowed: |X[k]| = A N / 4 and |X[k +- 1]| = A N / 8, nothing
    elsewhere (the periodic Hann window is 1/2 - 1/4 e^{+i} - 1/4 e^{-i} in frequency)."""
    k, amp, n = 20, 0.5, FE.n_fft
    x = tone(k * FE.sample_rate / n, FE.num_samples / FE.sample_rate, amp=amp, phase=0.3)
    power = np.zeros(n // 2 + 1)
    power[k], power[k - 1], power[k + 1] = (amp * n / 4) ** 2, (amp * n / 8) ** 2, (amp * n / 8) ** 2
    got = audio.log_mel(x.astype(np.float32), FE)  # (M, T)
    assert got.shape == (FE.n_mels, FE.frames) == (32, 64)
    expected = np.log(audio.mel_filterbank(FE).astype(np.float64) @ power + FE.floor)  # (M,), every frame
    np.testing.assert_allclose(got, np.repeat(expected[:, None], FE.frames, 1), atol=2e-3)
    assert 1 <= (expected > np.log(FE.floor) + 1).sum() <= 3  # bins k-1..k+1 reach at most 3 bands


def test_mel_filterbank_follows_the_formulas():
    assert audio.hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2))
    assert audio.mel_to_hz(audio.hz_to_mel(1234.5)) == pytest.approx(1234.5)
    fb = audio.mel_filterbank(FE)  # (M, K)
    edges = audio.mel_to_hz(np.linspace(0, audio.hz_to_mel(4000.0), FE.n_mels + 2))
    m, f = 20, np.arange(FE.n_fft // 2 + 1) * 8000 / 256
    lo, mid, hi = edges[m : m + 3]
    by_hand = [
        2 / (hi - lo) * ((fk - lo) / (mid - lo) if fk <= mid else (hi - fk) / (hi - mid)) if lo < fk < hi else 0.0
        for fk in f
    ]
    np.testing.assert_allclose(fb[m], by_hand, rtol=1e-5, atol=1e-9)
    assert np.all(np.diff(fb.argmax(1)) >= 0)  # centres rise with the band index


def test_smoothing_over_the_bands_keeps_the_envelope_and_drops_the_ripple():
    """``cepstra=K`` projects each frame onto the first K DCT terms: a smooth envelope passes unchanged,
    the fast ripple of pitch harmonics goes, smoothing twice is smoothing once, and 0 leaves the image."""
    fe = FrontEnd(cepstra=12)
    m = np.arange(fe.n_mels)[:, None]  # (M, 1)
    envelope = 3.0 + np.cos(np.pi / fe.n_mels * (m + 0.5) * 4) * np.ones((1, 5))  # (M, T): DCT term 4
    ripple = 0.5 * np.cos(np.pi / fe.n_mels * (m + 0.5) * 20) * np.ones((1, 5))  # DCT term 20
    np.testing.assert_allclose(audio.smooth_bands(envelope + ripple, fe), envelope, atol=1e-5)
    once = audio.smooth_bands(envelope + ripple, fe)
    np.testing.assert_allclose(audio.smooth_bands(once, fe), once, atol=1e-5)
    np.testing.assert_array_equal(audio.smooth_bands(envelope + ripple, FrontEnd()), envelope + ripple)


def test_trim_centres_the_speech_not_the_recording():
    """``trim=True`` cuts the silence around a word before centring, so a word said late in its recording
    lands where the same word said alone does (less the VAD's margin); the default centres the file, and
    a recording without speech passes through unchanged."""
    word = tone(600, 0.3).astype(np.float32)  # (2400,)
    late = np.concatenate([np.zeros(4000, np.float32), word, np.zeros(400, np.float32)])  # word at 0.5-0.8 s
    fe = FrontEnd(trim=True)

    def centre_of_mass(img):  # the mean index of the frames where the tone is loud
        loudest = img.max(axis=0)  # (T,)
        return float(np.flatnonzero(loudest > (loudest.min() + loudest.max()) / 2).mean())

    mid = (FE.frames - 1) / 2
    assert abs(centre_of_mass(audio.waveform_features(late, fe)) - mid) < 1.0
    assert abs(centre_of_mass(audio.waveform_features(word, fe)) - mid) < 1.0
    assert centre_of_mass(audio.waveform_features(late, FE)) - mid > 8  # untrimmed: the word sits late
    silent = np.zeros(3000, np.float32)
    np.testing.assert_array_equal(audio.trim_silence(silent, fe), silent)


def test_fix_length_centres():
    np.testing.assert_array_equal(audio.fix_length(np.array([1.0, 2.0]), 5), [0, 1, 2, 0, 0])
    np.testing.assert_array_equal(audio.fix_length(np.arange(7.0), 3), [2, 3, 4])


def test_stereo_8bit_and_other_rates_are_converted(tmp_path):
    x = tone(625, 0.5)
    mono = audio.read_wav(write_wav(tmp_path / "m.wav", x), 8000)
    stereo = audio.read_wav(write_wav(tmp_path / "s.wav", np.stack([x, x], 1)), 8000)
    np.testing.assert_allclose(stereo, mono, atol=1e-4)
    eight_bit = audio.read_wav(write_wav(tmp_path / "u8.wav", x, width=1), 8000)
    np.testing.assert_allclose(eight_bit, mono, atol=1 / 100)
    hi = audio.read_wav(write_wav(tmp_path / "16k.wav", tone(625, 0.5, rate=16000), rate=16000), 8000)
    assert len(hi) == 4000
    np.testing.assert_allclose(hi[100:-100], mono[100:-100], atol=1e-2)  # same tone after resampling


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"this is not audio", "not a PCM WAV file"),
        (b"", "not a PCM WAV file"),
    ],
)
def test_bad_files_are_refused_clearly(tmp_path, content, needle):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(DataError, match=needle):
        audio.read_wav(tmp_path / "bad.wav", 8000)


def test_a_wav_without_samples_is_refused(tmp_path):
    with pytest.raises(DataError, match="holds no samples"):
        audio.read_wav(write_wav(tmp_path / "empty.wav", np.zeros(0)), 8000)


def test_split_rules():
    speakers = np.array(["a"] * 50 + ["b"] * 50)
    takes = np.tile(np.arange(50), 2)
    train, test = fsdd.split_masks(speakers, takes, "official")
    assert test.sum() == 10 and set(takes[test]) == {0, 1, 2, 3, 4} and not (train & test).any()
    train, test = fsdd.split_masks(speakers, takes, "speaker:b")
    assert set(speakers[test]) == {"b"} and set(speakers[train]) == {"a"}
    with pytest.raises(DiptychError, match="no speaker 'carol'.*choose one of a, b"):
        fsdd.split_masks(speakers, takes, "speaker:carol")
    with pytest.raises(DiptychError, match="unknown --split 'random'"):
        fsdd.split_masks(speakers, takes, "random")
    with pytest.raises(DiptychError, match="has only its official split"):
        load_dataset("mnist1d", split="speaker:b")


def test_loader_normalizes_with_training_statistics_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPTYCH_CACHE", str(tmp_path / "cache"))
    folder = tone_digits(tmp_path / "rec", speakers=("anna", "bert"), takes=6)
    ds = load_dataset("fsdd", folder, split="speaker:bert")
    assert ds.x_train.shape == (60, 32, 64) and ds.x_test.shape == (60, 32, 64)
    assert sorted(set(ds.y_test.tolist())) == list(range(10))
    mean, std = ds.x_train.mean(axis=(0, 2)), ds.x_train.std(axis=(0, 2))
    np.testing.assert_allclose(mean, 0, atol=1e-4)  # per band, on the training split only
    np.testing.assert_allclose(std, 1, atol=1e-3)
    cached = list((tmp_path / "cache" / "fsdd").glob("features-*.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.zeros((1, 2, 3)))  # a stale entry of the wrong shape is recomputed
    again = load_dataset("fsdd", folder, split="speaker:bert")
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_folder_without_recordings_is_an_error(tmp_path):
    (tmp_path / "notes.wav").write_bytes(b"x")  # a wav, but not named {digit}_{speaker}_{take}.wav
    with pytest.raises(DataError, match="no recordings named"):
        load_dataset("fsdd", tmp_path)


def test_augmentation_parameters_are_seeded_and_sane():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 32, 64)).astype(np.float32)
    feats = audio.feature_stats(rng.normal(-8, 2, (4, 32, 64)), FE)
    spec = AugmentSpec(noise_prob=1.0)
    a, b, c = draw(spec, feats, x, 0, 1, 2), draw(spec, feats, x, 0, 1, 2), draw(spec, feats, x, 0, 1, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["noise"], c["noise"])
    assert np.abs(a["shift"]).max() <= spec.max_shift and a["keep"].min() == 0 and a["keep"].mean() > 0.5
    energy = np.exp(x * a["std"] + a["mean"]).mean(axis=(1, 2))
    snr = 10 * np.log10(energy / a["noise"].mean(axis=(1, 2)))
    assert np.all((snr > spec.snr_db[0] - 1) & (snr < spec.snr_db[1] + 1))  # noise at the drawn SNRs


def test_dither_is_deterministic_and_leaves_no_flat_silence(tmp_path):
    path = write_wav(tmp_path / "short.wav", tone(625, 0.2))  # most of the 1.04 s is padding
    a, b = audio.wav_features(path, FE), audio.wav_features(path, FE)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a[:, 1:] == a[:, :-1]) < 1e-3  # no exact ties for max-pool to break differently
    assert a[:, :5].max() < a[:, 30:34].max() - 5  # padding stays far below the tone
