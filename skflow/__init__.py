"""skflow: scikit-learn estimators trained by the gradient flows of mean-field ResNets and two-layer networks."""

__version__ = "0.1.0"
