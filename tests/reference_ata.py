"""A literal transcription of the seed's Algorithms 1 and 2 (one clip, sequential, scipy on the
CPU), the reference the batched ops are tested against. Not part of the package."""
import torch
from scipy.optimize import linear_sum_assignment


def literal_align(x, nonfinite=None):
    """Algorithm 1 on x (T, N, C). Returns the aligned features, the per-step alignment (the
    column matched to each row, i.e. alignment.argmax(-1)) and each step's total similarity.
    nonfinite, if given, replaces similarities that are not finite (scipy refuses them)."""
    x = x.clone()
    T = x.shape[0]
    steps, totals = [torch.arange(x.shape[1])], []
    for ti in range(1, T):
        prev = torch.nn.functional.normalize(x[ti - 1], dim=-1).detach()
        curr = torch.nn.functional.normalize(x[ti], dim=-1).detach()
        similarity = (prev @ curr.t()).double()
        if nonfinite is not None:
            similarity = torch.nan_to_num(similarity, nan=nonfinite, posinf=nonfinite, neginf=nonfinite)
        similarity = similarity.numpy()
        rows, cols = linear_sum_assignment(similarity, maximize=True)  # maximise total similarity
        cols = torch.from_numpy(cols)
        totals.append(float(similarity[rows, cols.numpy()].sum()))
        x[ti] = x[ti, cols]
        steps.append(cols)
    return x, torch.stack(steps), totals


def literal_dealign(x, dealignment):
    """Algorithm 2 on aligned x (T, N, C) with one-hot matrices (T, N, N), frame 0 included."""
    x = x.clone()
    for ti in range(1, x.shape[0]):
        x[ti] = x[ti, dealignment[ti].argmax(-1)]
    return x


def step_totals(x, perm):
    """Total cosine similarity of each aligned frame pair, as Algorithm 1 scores it."""
    a = torch.nn.functional.normalize(x.double(), dim=-1)
    a = a[torch.arange(x.shape[0])[:, None], perm]
    return [float((a[t - 1] * a[t]).sum()) for t in range(1, x.shape[0])]
