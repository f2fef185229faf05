# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Loss modules of our own (the others are mmdet's, built as ``mmdet.<Name>``)."""

from .giou_loss import GIoULoss

__all__ = ['GIoULoss']
