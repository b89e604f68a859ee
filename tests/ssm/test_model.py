"""SequenceModel: shapes, padding-aware pooling, the retrieval head."""

import pytest
import torch

from ssm.config import ModelConfig
from ssm.model import SequenceModel


@pytest.mark.parametrize("layer", ["s4d", "s4", "s5"])
def test_token_classification_shapes(layer):
    model = SequenceModel(
        ModelConfig(layer=layer, d_model=8, d_state=4, n_layers=2), 12, 5, input_type="tokens", l_max=20
    )
    assert model(torch.randint(1, 12, (3, 20))).shape == (3, 5)


def test_sequence_regression_shapes():
    model = SequenceModel(ModelConfig(d_model=8, d_state=4, n_layers=1), 2, 3, output="sequence")
    assert model(torch.randn(4, 15, 2)).shape == (4, 15, 3)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_ignores_padding(pooling):
    model = SequenceModel(
        ModelConfig(d_model=8, d_state=4, n_layers=2, pooling=pooling), 10, 3, input_type="tokens"
    ).eval()
    x = torch.randint(1, 10, (2, 16))
    lengths = torch.tensor([16, 9])
    changed = x.clone()
    changed[1, 9:] = torch.randint(1, 10, (7,))  # different garbage after the end
    torch.testing.assert_close(model(x, lengths), model(changed, lengths))
    assert not torch.allclose(model(x, lengths)[1], model(x)[1])


def test_last_pooling_reads_the_last_valid_step():
    model = SequenceModel(
        ModelConfig(d_model=8, d_state=4, n_layers=1, pooling="last"), 10, 3, input_type="tokens"
    ).eval()
    x = torch.randint(1, 10, (1, 12))
    torch.testing.assert_close(model(x, torch.tensor([7])), model(x[:, :7]))


def test_retrieval_head_is_symmetric_in_its_encoder():
    model = SequenceModel(
        ModelConfig(d_model=8, d_state=4, n_layers=1), 10, 2, input_type="tokens", paired=True
    ).eval()
    x = torch.randint(1, 10, (3, 2, 14))
    out = model(x, torch.tensor([[14, 10], [5, 14], [14, 14]]))
    assert out.shape == (3, 2)
    h = model.features(x.reshape(6, 14)).view(3, 2, 14, 8)
    assert torch.allclose(h[:, 0], model.features(x[:, 0]))  # both documents share the encoder


def test_bad_input_shapes():
    tokens = SequenceModel(ModelConfig(d_model=8, d_state=4, n_layers=1), 10, 3, input_type="tokens")
    with pytest.raises(ValueError, match=r"expected tokens input of shape \(B, L\)"):
        tokens(torch.zeros(2, 5, 3, dtype=torch.long))
    paired = SequenceModel(
        ModelConfig(d_model=8, d_state=4, n_layers=1), 10, 3, input_type="tokens", paired=True
    )
    with pytest.raises(ValueError, match=r"\(B, 2, L\)"):
        paired(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="input_type"):
        SequenceModel(ModelConfig(), 3, 2, input_type="pixels")
