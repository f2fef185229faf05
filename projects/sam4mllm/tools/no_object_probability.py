# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""How close a trained SAM4MLLM model is to saying "No object found.": the probability of the
first answer token ``No`` (against ``[``, a box) on the GRES val expressions, split by whether the
expression refers to nothing. Greedy decoding rejects only where P(No) > P([).

    python projects/sam4mllm/tools/no_object_probability.py CONFIG CHECKPOINT [--num 200]

Prints, for the empty and the non-empty expressions: their number, the mean and max P(No), the
mean P([) and how many have P(No) > P([).
"""

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))))
os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')  # mmengine#1655, as tools/test.py


def main(argv=None) -> dict:
    """Measure and print; returns ``{'empty': [(p_no, p_box), ...], 'target': [...]}``."""
    import torch
    from mmengine.runner import Runner, load_checkpoint

    from mmrefvlm.apis import load_config

    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--num', type=int, default=200, help='GRES val expressions')
    p.add_argument('--dataset-index', type=int, default=1, help='the GRES val dataset')
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    cfg.work_dir = osp.join('work_dirs', 'no_object_probability')
    datasets = cfg.test_dataloader.dataset.datasets
    cfg.test_dataloader.dataset.datasets = [datasets[args.dataset_index]]
    cfg.test_dataloader.dataset.datasets[0]['indices'] = args.num
    runner = Runner.from_cfg(cfg)
    model = runner.model.eval()
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    no_id, box_id = model.tokenizer.encode('No')[0], model.tokenizer.encode('[')[0]
    res: dict = {'empty': [], 'target': []}
    with torch.no_grad():
        for batch in runner.build_dataloader(cfg.test_dataloader):
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            vis, image_tokens = model.encode_images(inputs, samples)
            embeds, _ = model.embed_inputs(inputs, vis, image_tokens, data_samples=samples)
            out = model.llm(inputs_embeds=embeds, attention_mask=inputs['attention_mask'])
            probs = out.logits[:, -1].float().softmax(-1)  # left-padded: the last prompt token
            for prob, sample in zip(probs, samples, strict=True):
                key = 'empty' if len(sample.gt_instances) == 0 else 'target'
                res[key].append((float(prob[no_id]), float(prob[box_id])))
    for key, values in res.items():
        if values:
            t = torch.tensor(values)
            print(
                f'{key}: {len(values)} expressions, P(No) mean {t[:, 0].mean():.3f} max '
                f'{t[:, 0].max():.3f}, P([) mean {t[:, 1].mean():.3f}, '
                f'P(No) > P([): {int((t[:, 0] > t[:, 1]).sum())}'
            )
    return res


if __name__ == '__main__':
    main()
