"""SemanticUNet2DModel: configurations, save/load, mask-feature reuse, validation, gradient checkpointing."""

import numpy as np
import pytest
import torch

from lung_diffusers import SemanticUNet2DModel


def other_config_model(seed=0):
    """Every option the fixtures do not use: conv resampling, additive time embedding, head counts, 7 classes,
    3 image channels without learned variance, dropout, a wider time embedding."""
    torch.manual_seed(seed)
    return SemanticUNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        num_classes=7,
        block_out_channels=(32, 64, 96),
        layers_per_block=2,
        attention_downsample_factors=(1, 4),
        attention_head_dim=None,
        num_attention_heads=2,
        num_attention_heads_upsample=4,
        downsample_type="conv",
        upsample_type="conv",
        resnet_time_scale_shift="default",
        dropout=0.1,
        time_embedding_dim=192,
        spade_hidden_channels=48,
    ).eval()


def test_other_configuration_round_trips_through_save_and_load(tmp_path):
    model = other_config_model()
    assert model.down_blocks[0].attentions[0].heads == 2
    assert model.up_blocks[0].attentions[0].heads == 4  # decoder uses num_attention_heads_upsample
    assert model.up_blocks[1].attentions is None
    sample = torch.randn(2, 3, 16, 24)  # non-square works too
    labels = torch.randint(0, 7, (2, 16, 24))
    with torch.no_grad():
        expected = model(sample, torch.tensor([3, 999]), labels).sample
    assert expected.shape == (2, 3, 16, 24)

    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = SemanticUNet2DModel.from_pretrained(tmp_path).eval()
    as_lists = lambda config: {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert as_lists(reloaded.config) == as_lists(model.config)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(sample, torch.tensor([3, 999]), labels).sample, expected, rtol=0, atol=0)


def test_mask_feature_reuse_equals_recomputing(tiny_unet, reference_labels):
    sample = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = tiny_unet.encode_segmentation(reference_labels)
        for t in (999, 500, 3):
            recomputed = tiny_unet(sample, t, reference_labels).sample
            reused = tiny_unet(sample, t, segmentation_features=features).sample
            torch.testing.assert_close(reused, recomputed, rtol=0, atol=0)


def test_shared_maps_are_encoded_once_and_match_row_by_row(tiny_unet, reference_labels):
    # Two maps with 2 images each, then the null map for 3 images: 7 images from 3 encoded maps.
    one_hot = tiny_unet.segmentation_to_one_hot(reference_labels)
    maps = torch.cat([one_hot, torch.zeros_like(one_hot[:1])])
    per_image = maps[[0, 0, 1, 1, 2, 2, 2]]
    sample = torch.randn(7, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = tiny_unet.encode_segmentation(maps, repeats=(2, 2, 3))
        assert features.num_maps == 3 and features.num_images == 7 and features.map_groups == ((2, 2), (1, 3))
        assert features.nbytes == tiny_unet.segmentation_feature_bytes(32, 32, num_maps=3)
        shared = tiny_unet(sample, 100, segmentation_features=features).sample
        inline = tiny_unet(sample, 100, segmentation=maps, segmentation_repeats=(2, 2, 3)).sample
        rows = torch.cat([tiny_unet(sample[i : i + 1], 100, per_image[i : i + 1]).sample for i in range(7)])
    torch.testing.assert_close(inline, shared, rtol=0, atol=0)
    torch.testing.assert_close(shared, rows, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="repeats"):
        tiny_unet.encode_segmentation(maps, repeats=(2, 2))


def test_forward_returns_features_computed_on_the_sample_device(tiny_unet, reference_labels):
    sample = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        result = tiny_unet(sample, 3, reference_labels.numpy(), return_segmentation_features=True)
        assert result.segmentation_features.modulations[0][0].device == sample.device
        again = tiny_unet(sample, 3, segmentation_features=result.segmentation_features).sample
    torch.testing.assert_close(again, result.sample, rtol=0, atol=0)
    assert tiny_unet(sample, 3, reference_labels).segmentation_features is None  # only when asked


def test_model_keeps_no_mask_features(reference_labels):
    """Nothing of a mask outlives the call that used it: no cache on the model, whatever the device or dtype."""
    import gc
    import weakref

    model = SemanticUNet2DModel(sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
                                attention_downsample_factors=(2,), attention_head_dim=16).eval()
    with torch.no_grad():
        features = model.encode_segmentation(torch.zeros(1, 6, 32, 32))
        model(torch.randn(2, 1, 32, 32), 5, segmentation_features=features)
        model.to(torch.bfloat16)(torch.randn(2, 1, 32, 32, dtype=torch.bfloat16), 5, reference_labels)
    alive = weakref.ref(features)
    del features
    gc.collect()
    assert alive() is None
    held = {name: value for name, value in vars(model).items() if torch.is_tensor(value)}
    held.update({name: value for name, value in vars(model).items() if isinstance(value, dict) and "cache" in name})
    assert not held


def test_label_map_forms_are_equivalent(tiny_unet, reference_labels):
    sample = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = tiny_unet(sample, 7, reference_labels).sample
        for form in (reference_labels[:, None], reference_labels.float(), reference_labels.numpy().astype(np.uint8),
                     tiny_unet.segmentation_to_one_hot(reference_labels)):
            torch.testing.assert_close(tiny_unet(sample, 7, form).sample, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "segmentation, error, message",
    [
        (torch.full((1, 32, 32), 6), ValueError, r"\[0, 6\)"),
        (torch.full((1, 32, 32), -1), ValueError, r"\[0, 6\)"),
        (torch.full((1, 32, 32), 1.5), ValueError, "fractional"),
        (torch.full((1, 32, 32), float("nan")), ValueError, "NaN"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.long), ValueError, "shape"),
        (torch.zeros(32, 32, dtype=torch.long), ValueError, "shape"),
        (torch.zeros(1, 32, 32, dtype=torch.bool), TypeError, "integer"),
    ],
)
def test_bad_segmentation_is_rejected(tiny_unet, segmentation, error, message):
    with pytest.raises(error, match=message):
        tiny_unet(torch.randn(1, 1, 32, 32), 1, segmentation)


def test_bad_shapes_are_rejected(tiny_unet, reference_labels):
    with pytest.raises(ValueError, match="multiples of 4"):
        tiny_unet(torch.randn(1, 1, 30, 32), 1, torch.zeros(1, 30, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="does not match"):
        tiny_unet(torch.randn(1, 1, 32, 32), 1, torch.zeros(1, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="either"):
        tiny_unet(torch.randn(1, 1, 32, 32), 1)
    features = tiny_unet.encode_segmentation(reference_labels)
    with pytest.raises(ValueError, match="for 2 images"):
        tiny_unet(torch.randn(3, 1, 32, 32), 1, segmentation_features=features)
    with pytest.raises(TypeError, match="SegmentationFeatures"):
        tiny_unet(torch.randn(2, 1, 32, 32), 1, segmentation_features=features.modulations)
    with pytest.raises(ValueError, match="another image size"):
        tiny_unet(torch.randn(2, 1, 64, 64), 1, segmentation_features=features)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"out_channels": 3}, "out_channels"),
        ({"attention_downsample_factors": (3,)}, "attention_downsample_factors"),
        ({"attention_downsample_factors": (8,)}, "attention_downsample_factors"),
        ({"block_out_channels": (32, 48)}, "norm_num_groups"),
        ({"attention_head_dim": 24}, "cannot be split"),
        ({"num_attention_heads": 2}, "exactly one"),
        ({"downsample_type": "pool"}, "downsample_type"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_configs_are_rejected(change, message):
    config = dict(sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
                  attention_downsample_factors=(2,), attention_head_dim=16)
    with pytest.raises(ValueError, match=message):
        SemanticUNet2DModel(**{**config, **change})


def test_gradient_checkpointing_gives_the_same_gradients(reference_labels):
    torch.manual_seed(0)
    model = SemanticUNet2DModel(sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
                                attention_downsample_factors=(2,), attention_head_dim=16)
    sample = torch.randn(2, 1, 32, 32)

    def gradients():
        model.zero_grad()
        model(sample, torch.tensor([5, 600]), reference_labels).sample.square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = gradients()
    model.enable_gradient_checkpointing()
    assert model.mid_block.gradient_checkpointing and model.up_blocks[0].gradient_checkpointing
    checkpointed = gradients()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_precomputed_features_path_has_no_graph_breaks(tiny_unet, reference_labels):
    """The sampling loop's forward (features given) traces as one graph; inductor itself is benchmarked, not tested."""
    sample = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        features = tiny_unet.encode_segmentation(reference_labels, repeats=(1, 1))
        expected = tiny_unet(sample, torch.tensor(7), segmentation_features=features).sample
        torch._dynamo.reset()
        compiled = torch.compile(tiny_unet, fullgraph=True, backend="eager")
        try:
            out = compiled(sample, torch.tensor(7), segmentation_features=features).sample
        finally:
            torch._dynamo.reset()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def super_resolution_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(
        sample_size=64,
        block_out_channels=(32, 32),
        layers_per_block=1,
        attention_downsample_factors=(),
        add_attention=False,
        spade_hidden_channels=8,
        low_res_channels=1,
        training_crop_size=16,
    )
    return SemanticUNet2DModel(**{**config, **overrides}).eval()


def test_a_super_resolution_stage_takes_the_low_res_image_and_its_noise_level(tmp_path):
    model = super_resolution_model()
    # Zero-initialised output convs would hide whether the new inputs reach the output.
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    sample, low_res = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    labels = torch.randint(0, 6, (2, 16, 16))
    with torch.no_grad():
        out = model(sample, 10, labels, low_res_sample=low_res, noise_level=torch.tensor([0, 100])).sample
        other_image = model(sample, 10, labels, low_res_sample=-low_res, noise_level=torch.tensor([0, 100])).sample
        other_level = model(sample, 10, labels, low_res_sample=low_res, noise_level=50).sample
    assert out.shape == (2, 2, 16, 16)  # the sample's noise and variance only: the rule splits by the sample
    assert model.learned_variance and model.is_super_resolution
    assert not torch.allclose(out, other_image) and not torch.allclose(out, other_level)

    model.save_pretrained(tmp_path)
    reloaded = SemanticUNet2DModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.low_res_channels == 1 and reloaded.config.training_crop_size == 16
    with torch.no_grad():
        again = reloaded(sample, 10, labels, low_res_sample=low_res, noise_level=torch.tensor([0, 100])).sample
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_a_stage_for_crops_can_have_no_attention_at_all():
    # Self-attention would see a whole slice differently from the crops it learned on; convolutions do not.
    from diffusers.models.attention_processor import Attention

    model = super_resolution_model(block_out_channels=(32, 32, 32))
    assert not [m for m in model.modules() if isinstance(m, Attention)]
    assert [m for m in super_resolution_model(add_attention=True, attention_head_dim=16).modules() if isinstance(m, Attention)]


def test_existing_models_take_no_low_res_input_and_super_resolution_ones_need_it():
    plain = super_resolution_model(low_res_channels=0, training_crop_size=None)
    assert plain.class_embedding is None and not plain.is_super_resolution
    sample, labels = torch.randn(1, 1, 16, 16), torch.randint(0, 6, (1, 16, 16))
    with pytest.raises(ValueError, match="takes no low-resolution image"):
        plain(sample, 1, labels, low_res_sample=sample, noise_level=0)
    model = super_resolution_model()
    with pytest.raises(ValueError, match="needs low_res_sample"):
        model(sample, 1, labels)
    with pytest.raises(ValueError, match="upsampled to the sample"):
        model(sample, 1, labels, low_res_sample=torch.randn(1, 1, 8, 8), noise_level=0)
    with pytest.raises(ValueError, match="training_crop_size"):
        super_resolution_model(training_crop_size=128)
