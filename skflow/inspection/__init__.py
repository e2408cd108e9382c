"""Looking at fitted flows: scikit-learn style Displays, and a convergence certificate before training.

* :class:`ConvergenceDisplay` -- training (and validation) risk against flow time, with the P-L bound
  ``R(0) exp(-m t)`` and the P-L ratio along the trajectory;
* :class:`KernelSpectrumDisplay` -- the kernel spectrum at initialisation, finite width against closed form;
* :class:`FeatureDistributionDisplay` -- VarPro's feature distribution against a reference density;
* :func:`certify` -- the quantities of the sufficient P-L condition on the data and the initialisation, and the
  linear rate they guarantee.

matplotlib is imported only when something is drawn.
"""

from ._certificate import ConvergenceCertificate, certify
from ._display import ConvergenceDisplay, FeatureDistributionDisplay, KernelSpectrumDisplay

__all__ = [
    "ConvergenceCertificate",
    "ConvergenceDisplay",
    "FeatureDistributionDisplay",
    "KernelSpectrumDisplay",
    "certify",
]
