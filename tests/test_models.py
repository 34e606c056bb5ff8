import pytest
import torch
import torchvision

from liteda.backbones import create_backbone
from liteda.classifier import ImageClassifier, build_classifier, load_classifier, model_record
from liteda.utils import UserError, atomic_torch_save


@pytest.mark.parametrize("arch,feat", [("mobilenet_v3_small", 1024), ("mobilenet_v3_large", 1280)])
def test_mobilenet_backbones_out_features(arch, feat):
    bb = create_backbone(arch, pretrained=False)
    assert bb.out_features == feat
    assert bb(torch.randn(2, 3, 64, 64)).shape == (2, feat)
    assert create_backbone(arch, pretrained=False, prelogits=False).out_features in (576, 960)


def test_timm_backbone_by_name():
    bb = create_backbone("tf_efficientnet_lite0", pretrained=False)
    assert bb(torch.randn(1, 3, 64, 64)).shape == (1, bb.out_features) and bb.mean == (0.5, 0.5, 0.5)


def test_unknown_arch_is_a_user_error():
    with pytest.raises(UserError, match="unknown arch"):
        create_backbone("not_a_model_xyz", pretrained=False)


def test_local_weights_load_and_mismatch(tmp_path):
    ref = torchvision.models.mobilenet_v3_small()
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    bb = create_backbone("mobilenet_v3_small", pretrained=str(tmp_path / "w.pth"))
    assert torch.equal(bb.features[0][0].weight, ref.features[0][0].weight)
    with pytest.raises(UserError, match="does not fit arch 'mobilenet_v3_large'"):
        create_backbone("mobilenet_v3_large", pretrained=str(tmp_path / "w.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot be read"):
        create_backbone("mobilenet_v3_small", pretrained=str(tmp_path / "junk.pth"))


def test_image_classifier_contract(tmp_path):
    model = build_classifier("mobilenet_v3_small", 5, pretrained=False, bottleneck_dim=32)
    model.train()
    y, f = model(torch.randn(4, 3, 32, 32))
    assert y.shape == (4, 5) and f.shape == (4, 32) and model.features_dim == 32
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    groups = model.get_parameters(0.01)
    assert [g["lr"] for g in groups] == [0.01, 0.01, 0.01]  # scratch: no 0.1x backbone
    ft = ImageClassifier(create_backbone("mobilenet_v3_small", pretrained=False), 5)
    assert ft.get_parameters(0.01)[0]["lr"] == pytest.approx(0.001)
    atomic_torch_save(model_record(model, "mobilenet_v3_small", list("abcde"), 32, 32), tmp_path / "model.pt")
    loaded, rec = load_classifier(tmp_path / "model.pt")
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(loaded.eval()(x), model(x)) and rec["classes"] == list("abcde")


def test_freeze_stages_keeps_prefix_fixed():
    bb = create_backbone("mobilenet_v3_small", pretrained=False)
    bb.freeze_stages(3)
    bb.train()
    assert not any(p.requires_grad for p in bb.features[:3].parameters())
    assert not bb.features[0].training and bb.features[3].training


def test_freeze_stages_of_an_efficientnet_style_timm_teacher():
    """Stem then block stages, as for MobileNetV3: the lite0 teacher trains with the grid's --freeze-stages."""
    bb = create_backbone("test_efficientnet", pretrained=False)
    bb.freeze_stages(2)  # the stem and the first block stage
    bb.train()
    m = bb.model
    frozen = [*m.conv_stem.parameters(), *m.bn1.parameters(), *m.blocks[0].parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in m.blocks[1].parameters())
    assert not m.bn1.training and not m.blocks[0].training and m.blocks[1].training
    with pytest.raises(ValueError, match="freeze stages"):
        bb.freeze_stages(len(m.blocks) + 2)
    with pytest.raises(ValueError, match="stages"):
        create_backbone("test_convnext", pretrained=False).freeze_stages(1)
