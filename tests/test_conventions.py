from distilxlsr.conventions import (
    FRAME_HOP,
    FRAME_WINDOW,
    XLSR_CONV_KERNEL,
    XLSR_CONV_STRIDE,
    frames_of,
)


def test_hop_and_window_follow_from_the_cnn():
    hop, window = 1, 1
    for kernel, stride in zip(reversed(XLSR_CONV_KERNEL), reversed(XLSR_CONV_STRIDE), strict=True):
        hop *= stride
        window = (window - 1) * stride + kernel
    assert (hop, window) == (FRAME_HOP, FRAME_WINDOW) == (320, 400)


def test_frames_of_matches_the_cnn_output_length():
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=[4] * 7,
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )
    model = Wav2Vec2Model(config)
    for n in (0, 399, 400, 719, 720, 16000, 16321):
        expected = int(model._get_feat_extract_output_lengths(torch.tensor(n))) if n >= 400 else 0
        assert frames_of(n) == expected, n
