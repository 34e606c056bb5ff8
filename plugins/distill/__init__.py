"""Teacher -> student knowledge distillation on the unlabeled target (Hinton et al., 2015).

A larger teacher (or an ensemble), itself trained on labeled source and adapted to the target, labels the
unlabeled target batch with soft predictions; the MobileNetV3-Small student matches them (KL at temperature T)
while the engine keeps its source cross-entropy. One module a job: :mod:`.losses`, :mod:`.teachers`,
:mod:`.refine` (clustering-refined teacher labels), :mod:`.method` (the engine's method ``kd``).
"""
from .losses import ClassBalancedPseudoLabelLoss, DomainMixupLoss, FeatureDistillationLoss, KnowledgeDistillationLoss
from .method import Distill, student_method
from .refine import RefinedLabels, RefinedPseudoLabelLoss, cluster_refined_labels
from .teachers import Renormalize, TeacherEnsemble, load_teacher, load_teachers, tta_views

__all__ = ["ClassBalancedPseudoLabelLoss", "Distill", "DomainMixupLoss", "FeatureDistillationLoss", "KnowledgeDistillationLoss",
           "RefinedLabels", "RefinedPseudoLabelLoss", "Renormalize", "TeacherEnsemble", "cluster_refined_labels",
           "load_teacher", "load_teachers", "student_method", "tta_views"]
