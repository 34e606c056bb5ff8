import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from liteda.metrics import classification_metrics, count_flops, info_max_score


def test_metrics_match_sklearn():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)
    m = classification_metrics(logits, labels, 4)
    y, p = labels.numpy(), logits.argmax(1).numpy()
    assert m["acc"] == pytest.approx(skm.accuracy_score(y, p) * 100)
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0) * 100)
    assert m["precision_macro"] == pytest.approx(skm.precision_score(y, p, average="macro", zero_division=0) * 100)
    assert m["recall_macro"] == pytest.approx(skm.recall_score(y, p, average="macro", zero_division=0) * 100)
    assert m["nmi"] == pytest.approx(skm.normalized_mutual_info_score(y, p))
    assert m["ari"] == pytest.approx(skm.adjusted_rand_score(y, p))
    assert m["confusion"] == skm.confusion_matrix(y, p, labels=range(4)).tolist()
    assert m["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())
    cm = np.array(m["confusion"])
    assert m["per_class_acc"] == pytest.approx(list(np.diag(cm) / cm.sum(1) * 100))


def test_info_max_score_extremes():
    confident_diverse = torch.eye(4) * 50
    collapsed = torch.zeros(4, 4)
    collapsed[:, 0] = 50
    assert info_max_score(confident_diverse)["im_score"] == pytest.approx(np.log(4), abs=1e-4)
    assert info_max_score(collapsed)["im_score"] == pytest.approx(0.0, abs=1e-4)


def test_flop_counter_on_a_linear_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    f = count_flops(model, 4)
    assert f["macs"] == 48 * 10 and f["flops"] == 2 * 48 * 10
