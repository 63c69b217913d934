"""Classical SDD baselines of the seed's history table: hand-crafted texture features + four classifiers.

``extract_features`` / ``extract_batch`` turn grey uint8 images into vectors; ``create_classical(name)`` builds
'rule_table' (If-Then range table), 'pnn' (Parzen PNN), 'svm' (RBF SVM) or 'mlp' (neural network).
"""

from steelscan.models.classical.classifiers import (
    CLASSICAL_MODELS,
    MLPBaseline,
    SVMClassifier,
    create_classical,
)
from steelscan.models.classical.features import N_FEATURES, extract_batch, extract_features, feature_names
from steelscan.models.classical.pnn import PNNClassifier
from steelscan.models.classical.rule_table import RuleTableClassifier

__all__ = [
    "CLASSICAL_MODELS",
    "MLPBaseline",
    "N_FEATURES",
    "PNNClassifier",
    "RuleTableClassifier",
    "SVMClassifier",
    "create_classical",
    "extract_batch",
    "extract_features",
    "feature_names",
]
