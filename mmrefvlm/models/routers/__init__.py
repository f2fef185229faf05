# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
from .latent_router import (
    FoundRef,
    LatentEmbeddingRouter,
    RoutedRef,
    RoutePlan,
    RoutingResult,
    UnitRoute,
    find_refs,
)
from .token_ref_parser import SpecialTokenRefParser

__all__ = [
    'LatentEmbeddingRouter',
    'RoutedRef',
    'RoutingResult',
    'RoutePlan',
    'UnitRoute',
    'find_refs',
    'FoundRef',
    'SpecialTokenRefParser',
]
