# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""mmrefvlm registries: children of MMEngine's root registries, scope ``mmrefvlm``.

Each registry lists the modules that register into it (``locations``); MMEngine imports them the
first time the registry is searched, so after ``init_default_scope('mmrefvlm')``
``MODELS.build(dict(type='RefVLM', ...))`` works without importing anything by hand. Components of
other OpenMMLab packages are reachable with their scope prefix, e.g. ``dict(type='mmdet.DiceLoss')``
(MMEngine imports ``mmdet.registry`` on demand; the mmcv ops guard in ``mmrefvlm/__init__`` makes
that import work with mmcv-lite).
"""

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

SCOPE = 'mmrefvlm'


def _child(name: str, parent: Registry, locations: list[str]) -> Registry:
    return Registry(name, parent=parent, scope=SCOPE, locations=locations)


RUNNERS = _child('runner', MMENGINE_RUNNERS, ['mmrefvlm.engine'])
RUNNER_CONSTRUCTORS = _child(
    'runner constructor', MMENGINE_RUNNER_CONSTRUCTORS, ['mmrefvlm.engine']
)
LOOPS = _child('loop', MMENGINE_LOOPS, ['mmrefvlm.engine'])
HOOKS = _child('hook', MMENGINE_HOOKS, ['mmrefvlm.engine', 'mmrefvlm.visualization'])
STRATEGIES = _child('strategy', MMENGINE_STRATEGIES, ['mmrefvlm.engine'])

DATASETS = _child('dataset', MMENGINE_DATASETS, ['mmrefvlm.datasets'])
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, ['mmrefvlm.datasets'])
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, ['mmrefvlm.datasets'])

MODELS = _child('model', MMENGINE_MODELS, ['mmrefvlm.models'])
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS, ['mmrefvlm.models'])
WEIGHT_INITIALIZERS = _child(
    'weight initializer', MMENGINE_WEIGHT_INITIALIZERS, ['mmrefvlm.models']
)
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, ['mmrefvlm.models'])

OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, ['mmrefvlm.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, ['mmrefvlm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    'optimizer wrapper constructor', MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, ['mmrefvlm.engine']
)
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS, ['mmrefvlm.engine'])

METRICS = _child('metric', MMENGINE_METRICS, ['mmrefvlm.evaluation'])
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, ['mmrefvlm.evaluation'])

VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, ['mmrefvlm.visualization'])
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, ['mmrefvlm.visualization'])
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS, ['mmrefvlm.engine'])
INFERENCERS = _child('inferencer', MMENGINE_INFERENCERS, ['mmrefvlm.apis'])
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS, ['mmrefvlm.datasets'])
# Overlay drawers of visual units (``UnitDrawer`` classes, keyed by class name): a kind of object
# the Runner never builds, so it has no MMEngine parent. Plugins register their units' drawers.
UNIT_DRAWERS = Registry('unit drawer', scope=SCOPE, locations=['mmrefvlm.visualization'])

# The registry that owns each key of a config, for error messages that list close names.
ALL_REGISTRIES = dict(
    RUNNERS=RUNNERS,
    LOOPS=LOOPS,
    HOOKS=HOOKS,
    DATASETS=DATASETS,
    DATA_SAMPLERS=DATA_SAMPLERS,
    TRANSFORMS=TRANSFORMS,
    MODELS=MODELS,
    TASK_UTILS=TASK_UTILS,
    OPTIMIZERS=OPTIMIZERS,
    OPTIM_WRAPPERS=OPTIM_WRAPPERS,
    PARAM_SCHEDULERS=PARAM_SCHEDULERS,
    METRICS=METRICS,
    EVALUATOR=EVALUATOR,
    VISUALIZERS=VISUALIZERS,
    VISBACKENDS=VISBACKENDS,
    FUNCTIONS=FUNCTIONS,
    UNIT_DRAWERS=UNIT_DRAWERS,
)
