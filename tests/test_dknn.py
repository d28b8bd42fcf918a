"""Tests for snnl.dknn: Deep k-Nearest Neighbors and feature extraction."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

from snnl.dknn import DkNN, DkNNResult, extract_features

# --- a case small enough to check by hand ---------------------------------------------------
# 6 training points, labels [0, 0, 0, 1, 1, 1], 1-D features in 2 layers, k = 2, no normalisation.
#   layer A: [0, 1, 2, 10, 11, 12]     classes cleanly separated
#   layer B: [0, 1, 10, 2, 11, 12]     i.e. label 0 at 0, 1, 10 and label 1 at 2, 11, 12
Y_TRAIN = np.array([0, 0, 0, 1, 1, 1])
A_TRAIN = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0])
B_TRAIN = np.array([0.0, 1.0, 10.0, 2.0, 11.0, 12.0])
# Calibration (A, B, label) -> neighbours' labels in A | in B -> alpha of the true label
#   (0.2,  0.2, 0): A {0, 1}->0,0   | B {0, 1}->0,0      -> 0 of 4 disagree   -> 0
#   (1.2,  1.7, 0): A {1, 2}->0,0   | B {2, 1}->1,0      -> 1
#   (11.2, 10.3, 1): A {11, 12}->1,1 | B {10, 11}->0,1    -> 1
#   (1.8, 10.2, 1): A {2, 1}->0,0   | B {10, 11}->0,1    -> 3
# so A = {0, 1, 1, 3}: p(alpha) = #{a >= alpha}/4 = 1, .75, .25, .25, 0 for alpha = 0..4.
A_CAL = np.array([0.2, 1.2, 11.2, 1.8])
B_CAL = np.array([0.2, 1.7, 10.3, 10.2])
Y_CAL = np.array([0, 0, 1, 1])
# Test points:
#   t1 (11.7, 11.6): A {12, 11}->1,1 | B {12, 11}->1,1 -> alpha = (4, 0) -> p = (0, 1)
#      prediction 1, credibility 1, confidence 1 - 0 = 1
#   t2 (0.3, 1.8):   A {0, 1}->0,0   | B {2, 1}->1,0   -> alpha = (1, 3) -> p = (.75, .25)
#      prediction 0, credibility .75, confidence .75
#   t3 (10.2, 0.6):  A {10, 11}->1,1 | B {1, 0}->0,0   -> alpha = (2, 2) -> p = (.25, .25)
#      a tie: prediction 0 (smallest index), credibility .25, confidence .75
A_TEST = np.array([11.7, 0.3, 10.2])
B_TEST = np.array([11.6, 1.8, 0.6])


def col(v):
    return v.reshape(-1, 1)


def hand_dknn(**kw):
    d = DkNN(k=2, normalize=False, **kw).fit([col(A_TRAIN), col(B_TRAIN)], Y_TRAIN)
    return d.calibrate([col(A_CAL), col(B_CAL)], Y_CAL)


def test_hand_worked_example():
    d = hand_dknn()
    np.testing.assert_array_equal(d.calibration_scores_, [0, 1, 1, 3])
    out = d.predict([col(A_TEST), col(B_TEST)])
    assert isinstance(out, DkNNResult)
    np.testing.assert_array_equal(out.nonconformity, [[4, 0], [1, 3], [2, 2]])
    np.testing.assert_allclose(out.p_values, [[0, 1], [0.75, 0.25], [0.25, 0.25]])
    np.testing.assert_array_equal(out.prediction, [1, 0, 0])
    np.testing.assert_allclose(out.credibility, [1, 0.75, 0.25])
    np.testing.assert_allclose(out.confidence, [1, 0.75, 0.75])
    np.testing.assert_array_equal(out.neighbors_labels[1], [[0, 0], [1, 0]])  # t2: layer A, layer B
    np.testing.assert_array_equal(out.neighbors_index[1], [[0, 1], [3, 1]])


def test_hand_worked_example_trim_zeros():
    # The authors' np.trim_zeros drops the 0 score: A = {1, 1, 3}, p(alpha) = 1, 1, 1/3, 1/3, 0.
    d = hand_dknn(trim_zero_calibration=True)
    np.testing.assert_array_equal(d.calibration_scores_, [1, 1, 3])
    out = d.predict([col(A_TEST), col(B_TEST)])
    np.testing.assert_allclose(out.p_values, [[0, 1], [1, 1 / 3], [1 / 3, 1 / 3]])
    np.testing.assert_allclose(out.credibility, [1, 1, 1 / 3])
    np.testing.assert_allclose(out.confidence, [1, 2 / 3, 2 / 3])


def test_hand_worked_example_extra_class():
    # A class with no training point: all 4 neighbours disagree, alpha = 4, p = #{a >= 4}/4 = 0.
    d = hand_dknn(num_classes=3)
    out = d.predict([col(A_TEST), col(B_TEST)])
    assert out.p_values.shape == (3, 3)
    np.testing.assert_allclose(out.p_values[:, 2], 0)
    np.testing.assert_allclose(out.p_values[:, :2], [[0, 1], [0.75, 0.25], [0.25, 0.25]])


def brute_knn(train, query, k):
    d = ((query[:, None, :].astype(np.float64) - train[None].astype(np.float64)) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")
    return order[:, :k], np.take_along_axis(d, order, 1)


def make_data(rng, n, widths=(16, 8), classes=4):
    y = rng.integers(0, classes, n)
    centers = [rng.normal(size=(classes, w)) for w in widths]
    return [c[y] + 0.8 * rng.normal(size=(n, len(c[0]))) for c in centers], y


def test_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    (train, y), (query, _) = make_data(rng, 1500), make_data(rng, 200)
    k = 10
    d = DkNN(k=k, normalize=False).fit(train, y)
    idx, dist = d.kneighbors(query)
    assert idx.shape == dist.shape == (200, 2, k)
    for layer in range(2):
        ref_idx, ref_d = brute_knn(train[layer], query[layer], k + 1)
        np.testing.assert_allclose(dist[:, layer], ref_d[:, :k], rtol=1e-4, atol=1e-4)
        clear = ref_d[:, k] - ref_d[:, k - 1] > 1e-3  # rows without a near-tie at the k-th neighbour
        assert clear.mean() > 0.9
        for i in np.flatnonzero(clear):
            assert set(idx[i, layer]) == set(ref_idx[i, :k])


def reference_dknn(train, y, cal, y_cal, test, k, classes):
    """Deep k-NN from the definition, with brute-force neighbours."""
    def alpha(feats):
        counts = np.zeros((len(feats[0]), classes), dtype=int)
        for t, q in zip(train, feats):
            nbrs, _ = brute_knn(t, q, k)
            for i, row in enumerate(y[nbrs]):
                counts[i] += np.bincount(row, minlength=classes)
        return len(train) * k - counts
    scores = alpha(cal)[np.arange(len(y_cal)), y_cal]
    a = alpha(test)
    p = np.array([[np.mean(scores >= v) for v in row] for row in a])
    return a, p


def test_matches_reference_on_random_data():
    rng = np.random.default_rng(1)
    (train, y), (cal, y_cal), (test, _) = make_data(rng, 800), make_data(rng, 150), make_data(rng, 100)
    out = DkNN(k=7, normalize=False).fit(train, y).calibrate(cal, y_cal).predict(test)
    a, p = reference_dknn(train, y, cal, y_cal, test, 7, 4)
    np.testing.assert_array_equal(out.nonconformity, a)
    np.testing.assert_allclose(out.p_values, p)
    np.testing.assert_array_equal(out.prediction, p.argmax(1))
    np.testing.assert_allclose(out.credibility, p.max(1))
    np.testing.assert_allclose(out.confidence, 1 - np.sort(p, 1)[:, -2])


def test_normalize_matches_manual_normalisation():
    rng = np.random.default_rng(2)
    (train, y), (cal, y_cal), (test, _) = make_data(rng, 600), make_data(rng, 100), make_data(rng, 80)
    norm = [t / np.linalg.norm(t, axis=1, keepdims=True) for t in train]
    mean = [t.mean(0) for t in norm]  # the TRAINING mean, applied to every set
    manual = lambda feats: [f / np.linalg.norm(f, axis=1, keepdims=True) - m for f, m in zip(feats, mean)]
    ours = DkNN(k=5, normalize=True).fit(train, y)
    np.testing.assert_allclose(ours.centers_[0], mean[0], atol=1e-6)
    ref = DkNN(k=5, normalize=False).fit(manual(train), y)
    a = ours.calibrate(cal, y_cal).predict(test)
    b = ref.calibrate(manual(cal), y_cal).predict(manual(test))
    np.testing.assert_array_equal(a.nonconformity, b.nonconformity)
    np.testing.assert_allclose(a.p_values, b.p_values)
    # and the neighbours are the brute-force neighbours of the manually normalised data
    idx, _ = ours.kneighbors(test)
    ref_idx, ref_d = brute_knn(manual(train)[0], manual(test)[0], 6)
    clear = ref_d[:, 5] - ref_d[:, 4] > 1e-4
    for i in np.flatnonzero(clear):
        assert set(idx[i, 0]) == set(ref_idx[i, :5])
    # scale invariance: normalisation makes the DkNN ignore each row's norm
    scaled = [t * rng.uniform(0.5, 3, size=(len(t), 1)) for t in test]
    np.testing.assert_array_equal(ours.predict(scaled).nonconformity, a.nonconformity)


def test_zero_rows_and_tensor_inputs():
    rng = np.random.default_rng(3)
    (train, y), (test, _) = make_data(rng, 200), make_data(rng, 10)
    train[0][:5] = 0.0  # e.g. dead ReLU units: no NaN from the normalisation
    d = DkNN(k=3).fit([torch.from_numpy(t) for t in train], torch.from_numpy(y))
    out = d.calibrate(train, y).predict([torch.from_numpy(t) for t in test])
    assert np.isfinite(out.p_values).all()
    # a single array is one layer; higher-rank rows are flattened
    one = DkNN(k=3, normalize=False).fit(train[0].reshape(200, 4, 4), y).calibrate(train[0], y)
    assert one.predict(test[0]).neighbors_labels.shape == (10, 1, 3)


def test_cpu_index_and_gpu_fallback():
    import faiss

    rng = np.random.default_rng(5)
    (train, y), (test, _) = make_data(rng, 100), make_data(rng, 10)
    auto = DkNN(k=3).fit(train, y)
    if faiss.get_num_gpus() == 0:
        assert all(isinstance(i, faiss.IndexFlatL2) for i in auto.indexes_)
        with pytest.warns(RuntimeWarning, match="GPU"):
            forced = DkNN(k=3, use_gpu=True).fit(train, y)
        np.testing.assert_array_equal(forced.kneighbors(test)[0], auto.kneighbors(test)[0])
    cpu = DkNN(k=3, use_gpu=False).fit(train, y)
    assert all(isinstance(i, faiss.IndexFlatL2) for i in cpu.indexes_)
    np.testing.assert_array_equal(cpu.kneighbors(test)[0], auto.kneighbors(test)[0])


def test_errors():
    rng = np.random.default_rng(4)
    (train, y), (cal, y_cal) = make_data(rng, 50), make_data(rng, 20)
    with pytest.raises(RuntimeError, match="fit"):
        DkNN(k=3).predict(train)
    with pytest.raises(RuntimeError, match="fit"):
        DkNN(k=3).calibrate(cal, y_cal)
    d = DkNN(k=3).fit(train, y)
    with pytest.raises(RuntimeError, match="calibrate"):
        d.predict(cal)
    with pytest.raises(ValueError, match="larger than the training set"):
        DkNN(k=51).fit(train, y)
    with pytest.raises(ValueError, match="empty"):
        d.calibrate([t[:0] for t in cal], y_cal[:0])
    with pytest.raises(ValueError, match="labels"):
        d.calibrate(cal, y_cal[:-1])
    with pytest.raises(ValueError, match="labels"):
        DkNN(k=3).fit(train, y[:10])
    with pytest.raises(ValueError, match="labels"):
        DkNN(k=3).fit(train, y.astype(float))
    with pytest.raises(ValueError, match="num_classes"):
        d.calibrate(cal, np.full(20, 9))
    with pytest.raises(ValueError, match="num_classes"):
        DkNN(k=3, num_classes=2).fit(train, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DkNN(k=3).fit(train, np.zeros(50, dtype=int))
    d.calibrate(cal, y_cal)
    with pytest.raises(ValueError, match="layers of widths"):
        d.predict(cal[:1])  # one layer instead of two
    with pytest.raises(ValueError, match="layers of widths"):
        d.predict([cal[0], cal[1][:, :3]])  # wrong width
    with pytest.raises(ValueError, match="same number of rows"):
        d.predict([cal[0], cal[1][:5]])
    bad = cal[0].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        d.predict([bad, cal[1]])
    with pytest.raises(ValueError, match="NaN"):
        DkNN(k=3).fit([bad, cal[1]], y_cal)
    with pytest.raises(ValueError, match="k must be"):
        DkNN(k=0)
    with pytest.raises(ValueError, match="shape"):
        DkNN(k=3).fit(np.zeros(10), y[:10])
    with pytest.raises(ValueError, match="every calibration score is 0"):
        hand_dknn(trim_zero_calibration=True).calibrate([col(A_CAL[:1]), col(B_CAL[:1])], Y_CAL[:1])


class HiddenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(3 * 6 * 6, 5)
        self.fc2 = nn.Linear(5, 4)

    def forward(self, x):
        h1 = torch.relu(self.conv1(x))
        h2 = torch.relu(self.fc1(self.drop(h1.flatten(1))))
        return self.fc2(h2), OrderedDict(conv1=h1, fc1=h2)


def test_extract_features():
    torch.manual_seed(0)
    model = HiddenNet().train()
    x = torch.rand(23, 1, 8, 8)
    feats = extract_features(model, x, batch_size=5)
    assert model.training  # mode restored
    assert [f.shape for f in feats] == [(23, 108), (23, 5), (23, 4)]  # hidden layers, then logits
    assert all(f.dtype == np.float32 and f.flags.c_contiguous for f in feats)
    model.eval()
    with torch.no_grad():
        logits, hidden = model(x)
    np.testing.assert_allclose(feats[0], hidden["conv1"].flatten(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(feats[2], logits.numpy(), atol=1e-6)
    sel = extract_features(model, x, layers=["logits", "fc1"], batch_size=100)
    np.testing.assert_allclose(sel[0], feats[2], atol=1e-6)
    np.testing.assert_allclose(sel[1], feats[1], atol=1e-6)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="unknown layer"):
        extract_features(model, x, layers=["fc9"])
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(model, x, batch_size=0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    (only,) = extract_features(plain, x)
    assert only.shape == (23, 3)
    # the features feed a DkNN directly
    y = torch.arange(23) % 4
    out = DkNN(k=3).fit(feats, y).calibrate(feats, y).predict(feats)
    assert out.prediction.shape == (23,)


def test_sparse_label_ids_are_the_classes_themselves():
    # the hand-worked case with labels 0 -> 7 and 1 -> 10**9: the same p-values, predictions in those ids
    ids = np.array([7, 10**9])
    dense = hand_dknn().predict([col(A_TEST), col(B_TEST)])
    d = DkNN(k=2, normalize=False).fit([col(A_TRAIN), col(B_TRAIN)], ids[Y_TRAIN])
    d.calibrate([col(A_CAL), col(B_CAL)], ids[Y_CAL])
    out = d.predict([col(A_TEST), col(B_TEST)])
    assert d.num_classes_ == 2 and d.classes_.tolist() == [7, 10**9]
    np.testing.assert_array_equal(out.p_values, dense.p_values)
    np.testing.assert_array_equal(out.prediction, ids[dense.prediction])
    np.testing.assert_array_equal(out.neighbors_labels, ids[dense.neighbors_labels])
    with pytest.raises(ValueError, match="not a class"):
        d.calibrate([col(A_CAL), col(B_CAL)], np.array([7, 8, 7, 7]))


def test_zero_width_layer_is_refused():
    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="zero width"):
        DkNN(k=3).fit([rng.normal(size=(20, 4)), np.zeros((20, 0))], y)
    d = DkNN(k=3).fit(rng.normal(size=(20, 4)), y).calibrate(rng.normal(size=(6, 4)), y[:6])
    with pytest.raises(ValueError, match="zero width"):
        d.predict(np.zeros((5, 0)))


# --- hidden layers by name on any model: model.named_modules() ---------------------------------
def _by_hand(model, x, upto):
    """The output of ``model[upto]`` of an nn.Sequential, computed without hooks."""
    with torch.no_grad():
        for m in model[:upto + 1]:
            x = m(x)
    return x.flatten(1).numpy()


def test_features_and_dknn_by_layer_name_on_a_sequential():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).train()
    x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 3
    feats = extract_features(model, x, layers=["2", "1", "logits"], batch_size=7)
    assert model.training and [f.shape for f in feats] == [(40, 16), (40, 16), (40, 3)]
    model.eval()
    np.testing.assert_allclose(feats[0], _by_hand(model, x, 2), atol=1e-6)  # after the ReLU
    np.testing.assert_allclose(feats[1], _by_hand(model, x, 1), atol=1e-6)  # before it
    np.testing.assert_allclose(feats[2], _by_hand(model, x, 4), atol=1e-6)
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0  # hooks removed
    out = DkNN(k=3).fit(feats, y).calibrate(feats, y).predict(extract_features(model, x[:5], ["2", "1", "logits"]))
    assert out.prediction.shape == (5,) and out.p_values.shape == (5, 3)
    with pytest.raises(ValueError, match=r"unknown layer '5' in Sequential \(names are the model's outputs' or "
                                         r"model.named_modules\(\)'s\); valid names include: 'logits', '0', '1'"):
        extract_features(model, x, layers=["5"])


def test_features_and_dknn_by_layer_name_on_a_torchvision_resnet18():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=4)
    x, y = torch.rand(24, 3, 32, 32), torch.arange(24) % 4
    layers = ["layer2", "layer4.1.conv2", "avgpool", "fc"]
    feats = extract_features(model, x, layers=layers, batch_size=10)
    assert [f.shape for f in feats] == [(24, 128 * 4 * 4), (24, 512), (24, 512), (24, 4)]
    model.eval()
    with torch.no_grad():
        h = model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))
        logits = model(x)
    np.testing.assert_allclose(feats[0], h.flatten(1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats[3], logits.numpy(), rtol=1e-4, atol=1e-5)
    # bn1 is followed by ReLU(inplace=True): the copy is of its output as bn1 made it
    (bn1,) = extract_features(model, x[:4], layers=["bn1"])
    with torch.no_grad():
        np.testing.assert_allclose(bn1, model.bn1(model.conv1(x[:4])).flatten(1).numpy(), rtol=1e-4, atol=1e-5)
    assert bn1.min() < 0
    out = DkNN(k=3).fit(feats, y).calibrate(feats[:], y).predict(extract_features(model, x[:6], layers))
    assert out.prediction.shape == (6,) and out.neighbors_index.shape == (6, 4, 3)
    with pytest.raises(ValueError, match=r"unknown layer 'layer4\.1\.conv' in ResNet .*; closest: "
                                         r"'layer4\.1\.conv2', 'layer4\.1\.conv1'"):
        extract_features(model, x, layers=["layer2", "layer4.1.conv"])
    with pytest.raises(RuntimeError, match=r"\['layer1.0.relu'\] ran 2 times in one forward pass"):
        extract_features(model, x, layers=["layer1.0.relu"])  # BasicBlock calls its ReLU twice


def test_the_models_own_layer_names_come_first():
    """CNN's hidden ``conv1`` is after ReLU and pooling, its module ``conv1`` the bare convolution:
    the name means the model's own output, as before; module names reach the rest."""
    from snnl.models import CNN

    torch.manual_seed(0)
    model, x = CNN(), torch.rand(6, 1, 28, 28)
    conv1, fc1, logits = extract_features(model, x, layers=["conv1", "fc1", "logits"])
    with torch.no_grad():
        out, hidden = model.eval()(x)
    np.testing.assert_allclose(conv1, hidden["conv1"].flatten(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(fc1, hidden["fc1"].numpy(), atol=1e-6)
    np.testing.assert_allclose(logits, out.numpy(), atol=1e-6)
    (bare,) = extract_features(model, x, layers=["conv2"])  # the hidden conv2, not the module's output
    assert bare.shape == (6, 32 * 7 * 7)
    (pre,) = extract_features(nn.Sequential(model), x, layers=["0.conv2"])  # the module, by its full name
    assert pre.shape == (6, 32 * 14 * 14)
