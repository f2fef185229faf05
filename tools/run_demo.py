# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The embedded demo (`make demo`). Placeholder smoke run of the factories until train/test land."""
import time

import torch

from mmrefvlm.models.llms import build_causal_lm
from mmrefvlm.tokenization import build_tokenizer


def main() -> None:
    t0 = time.time()
    tok = build_tokenizer('demo')
    llm = build_causal_lm(config=dict(model_type='llama', vocab_size=len(tok), hidden_size=64,
                                      intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2),
                          tokenizer=tok)
    ids = torch.tensor([tok.encode('<Phrase>red circle</Phrase>(<Unit>box</Unit>[0]<REF>)')])
    logits = llm(input_ids=ids).logits
    print(f'demo smoke: tokenizer {len(tok)} tokens, LLM logits {tuple(logits.shape)}, '
          f'{time.time() - t0:.1f}s')


if __name__ == '__main__':
    main()
