"""Quick held-out comparisons of conv recipes on a subset of MNIST.

    BSTDG_DATA=/path/to/datasets python benchmarks/conv_heldout_sweep.py 10000 \
        "epochs=2, theta_out=16, fire_conv=0.8" "epochs=2, theta_out=16, fire_conv=0.8, threshold_mode='neuron'"

Trains one network per recipe (each argument after the first: ``TrainConfig`` keyword
arguments, plus ``window`` for the rule; here ``arch`` defaults to conv16k5,pool2,fc128,
``epochs`` to 3 and ``theta_out`` to 32) on the first N training images and prints, after
every epoch, the accuracy of the saved network on training images 55,000–56,999 (held out:
never trained on here, never the test set), the decision time, silent samples, spikes per
sample per layer, training samples/s and the running training accuracy.
"""

import sys

import numpy as np

from bstdg.conv_train import LayeredTrainer, initial_layered
from bstdg.data import load_events
from bstdg.evaluation import evaluate
from bstdg.learning import LearningRule
from bstdg.recipe import TrainConfig

ntr = int(sys.argv[1])
full = load_events("mnist", "train", 256)
tr_ev, tr_lab = full.events.take(np.arange(ntr)), full.labels[:ntr]
ho = np.arange(55000, 57000)  # held-out training images (never trained on here)
ho_ev, ho_lab = full.events.take(ho), full.labels[ho]
for spec in sys.argv[2:]:
    kw = eval("dict(%s)" % spec)
    if "window" in kw:
        kw["rule"] = LearningRule(loss="anytime", window=kw.pop("window"))
    r = TrainConfig(**{"arch": "conv16k5,pool2,fc128", "epochs": 3, "theta_out": 32.0, **kw})
    net = initial_layered(r, tr_ev, (1, 28, 28), 10)
    tn = LayeredTrainer(net, r)
    for ep in range(r.epochs):
        info = tn.train_epoch(tr_ev, tr_lab)
        ev = evaluate(tn.model(), ho_ev, ho_lab).test_metrics()
        print(spec, "ep", ep + 1, "heldout %.4f" % ev["test_accuracy"], "dec %.1f" % ev["mean_decision_time"],
              "silent", ev["test_silent"], "spk", [round(v, 1) for v in ev["spikes_per_layer"].values()],
              "train/s %.0f" % info["train_samples_per_s"], "run %.3f" % info["train_accuracy_running"], flush=True)
