"""Helpers shared by the test suite and the benchmarks: device lists, problem generators, the
scipy-backed optimality check and the auction's round counts. scipy is imported lazily: it is a
test dependency only."""
import numpy as np
import torch


def devices():
    """'cpu', plus 'cuda' when a GPU is visible: tests parametrize over this."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]


def stream_size(batch, n, m):
    """How many different inputs a benchmark of `batch` problems of n x m cycles through: enough
    for about 4 million costs a pass, 2 to 16. A solver given the same input over and over runs
    faster than on a stream of new ones, as a training loop gives it, because the CPU's branch
    predictor learns the input's branches (on the 2-core development machine one 196 x 196 uniform
    problem took 1.8x as long in a stream, DETR-like 64 x 100 x 30 1.5x; scipy 1.0x; batches of
    64 x 196 x 196 and more 1.0-1.1x)."""
    return int(min(16, max(2, -(-4_000_000 // max(1, batch * n * m)))))


def video_similarity(batch, n, channels=64, noise=0.3, generator=None, padding=0, repeated=0):
    """Cosine similarities of consecutive 'frames' whose patch features are a shuffled, noisy copy
    of the previous frame: the matrices ATA solves (maximize). Returns (batch, n, n) float32.
    padding: tokens 0 .. padding-1 are zero in both frames (padding around content that moves
    among the other positions), so their rows and columns of similarities are all 0.
    repeated: the next that many tokens of the first frame are one feature (a flat region, such as
    sky), so their rows of similarities are equal."""
    g = generator
    x0 = torch.randn(batch, n, channels, generator=g)
    x0[:, :padding] = 0
    x0[:, padding : padding + repeated] = x0[:, padding : padding + 1]
    perm = torch.argsort(torch.rand(batch, n - padding, generator=g), dim=1) + padding
    x1 = torch.gather(x0, 1, perm[..., None].expand(-1, -1, channels))
    x1 = torch.cat([x0[:, :padding], x1 + noise * torch.randn(batch, n - padding, channels, generator=g)], 1)
    a = torch.nn.functional.normalize(x0, dim=-1)
    b = torch.nn.functional.normalize(x1, dim=-1)
    return a @ b.transpose(1, 2)


def detr_costs(batch, queries, targets, spread, classes=5, generator=None):
    """DETR-style matching costs (batch, queries, targets), float32, minimize: the L1 distance
    between predicted and target boxes minus the predicted probability of the target's class.
    Predictions lie within spread/2 of one random point in each coordinate (small spread: a model
    early in training whose queries all predict nearly the same box; 0: exactly the same), and
    their class logits are spread-scaled noise."""
    g = generator
    target = torch.rand(batch, targets, 4, generator=g)
    pred = torch.rand(batch, 1, 4, generator=g) + spread * (torch.rand(batch, queries, 4, generator=g) - 0.5)
    prob = (spread * torch.randn(batch, queries, classes, generator=g)).softmax(-1)
    label = torch.randint(0, classes, (batch, 1, targets), generator=g).expand(-1, queries, -1)
    return torch.cdist(pred, target, p=1) - prob.gather(2, label)


def tracking_costs(batch, tracks, detections, generator=None):
    """Tracking-like association costs (batch, tracks, detections), float32: distances between the
    tracks' predicted positions and this frame's detections, 80% of which are tracks that moved a
    little (shuffled), the rest new objects or false positives anywhere."""
    g = generator
    p = torch.rand(batch, tracks, 2, generator=g)
    seen = min(tracks, int(0.8 * detections))
    moved = p[:, torch.randperm(tracks, generator=g)[:seen]] + 0.01 * torch.randn(batch, seen, 2, generator=g)
    det = torch.cat([moved, torch.rand(batch, detections - seen, 2, generator=g)], 1)
    return torch.cdist(p, det[:, torch.randperm(detections, generator=g)])


def point_distances(batch, rows, cols=None, generator=None):
    """Euclidean distances (batch, rows, cols), float32, between points drawn uniformly in the unit
    square: rows value columns alike by degrees, where the auction's bidders stall (a handful
    displace one another round after round) until path searches place them (auction.h, "Last
    bidders")."""
    cols = rows if cols is None else cols
    points = torch.rand(2, batch, max(rows, cols), 2, generator=generator)
    return torch.cdist(points[0, :, :rows], points[1, :, :cols])


def solver_families(generator, large=False):
    """Yields (cost, maximize) batches that stress a batched solver: random, video-like, ties,
    constant, rectangular both ways (DETR-like too), float16/bfloat16/float64, huge ranges, tiny
    gaps, forbidden pairs, long searches for the auction's last bidders, point distances (its
    stalled bidders) and tiny shapes. large=False keeps the batches small
    (for slow paths such as the CUDA emulator); large=True gives the GPU tests' batch sizes."""
    g = generator

    def b(small, big):
        return big if large else small

    yield torch.rand(b(3, 64), 49, 49, generator=g), False
    yield video_similarity(b(2, 32), 196, generator=g), True
    yield torch.randint(0, 4, (b(3, 16), 30, 30), generator=g).float(), False  # ties
    yield torch.full((b(2, 4), 40, 40), 3.0), True  # constant
    yield torch.rand(b(3, 8), 20, 35, generator=g).double(), False  # N < M
    yield torch.rand(b(3, 8), 35, 20, generator=g).half(), True  # N > M, float16
    yield (torch.rand(b(2, 8), 40, 40, generator=g) * 1e6).bfloat16(), False
    yield torch.rand(b(2, 8), 40, 40, generator=g).double() * 1e12 - 5e11, False  # huge range
    yield 1 + torch.rand(b(2, 8), 40, 40, generator=g).double() * 1e-9, True  # tiny gaps
    for n, m in ((30, 30), (20, 30)):  # forbidden pairs (+inf), still feasible
        c = torch.rand(b(3, 8), n, m, generator=g).double()
        c[torch.rand(c.shape, generator=g) < 0.45] = float("inf")
        c[:, torch.arange(n), torch.arange(n)] = 0.5
        yield c, False
    yield torch.rand(b(1, 8), 64, 64, generator=g), False  # long last-bidder searches in the auction
    # The auction's start prices (auction.h) where a column's runner-up pair is forbidden (clamped):
    # every pair forbidden but the diagonal and row 0, so column 0 has one allowed pair.
    c = torch.full((b(2, 8), 24, 24), float("inf"))
    c[:, 0] = torch.rand(c.shape[0], 24, generator=g)
    c[:, torch.arange(24), torch.arange(24)] = torch.rand(c.shape[0], 24, generator=g)
    yield c, False
    yield torch.rand(b(4, 16), 2, 2, generator=g), True  # start prices at their smallest size
    yield torch.rand(b(2, 64), 60, 7, generator=g), False  # DETR-like: few targets, many queries
    yield torch.randint(0, 3, (b(2, 8), 12, 40), generator=g).float(), True  # rectangular with ties
    # Many optima: two solvers that differ in how they walk to one answer differently here.
    yield torch.randint(0, 2, (b(2, 8), 45, 16), generator=g).float(), False
    yield torch.full((b(1, 4), 10, 30), 2.0), True
    # DETR early in training: every query (row) predicts the same box, so each target's cost is
    # the same down its column (a stride-0 view). Any assignment is optimal.
    yield torch.rand(b(2, 8), 1, 12, generator=g).expand(-1, 50, -1), False
    yield detr_costs(b(2, 8), 60, 12, 0.1, generator=g), False  # the same, nearly: a long fight
    # Flat rows (one value in every column) bid with the auction's pool (auction.h): zero tokens in
    # video-like similarities (their rows and columns all 0), DETR-like costs padded with zero
    # target columns (README, "Problems of different sizes"), and flat rows next to forbidden pairs.
    v = video_similarity(b(2, 16), 196, generator=g)
    v[:, :14] = 0
    v[:, :, :14] = 0
    yield v, True
    # Zero tokens in both frames at the same places, the content moving among the rest: the flat
    # rows sit among first choices (auction.h, "First choices").
    yield video_similarity(b(2, 16), 196, generator=g, padding=14), True
    d = detr_costs(b(2, 8), 60, 12, 0.2, generator=g)
    d[:, :, 5:] = 0
    yield d, False
    f = torch.rand(b(2, 8), 24, 30, generator=g).double()
    f[:, ::3] = 0.25
    f[:, 1::3][torch.rand(f[:, 1::3].shape, generator=g) < 0.3] = float("inf")
    yield f, False
    # Equal rows bid as one pool a group (auction.h, "Pools"): a flat region of a frame (28 equal
    # tokens); groups of 4 equal rows; equal columns of a tall problem (rows once transposed);
    # groups of 6 with forbidden pairs, next to flat rows; a square problem of equal rows.
    yield video_similarity(b(2, 16), 196, generator=g, repeated=28), True
    yield torch.rand(b(2, 8), 10, 40, generator=g).repeat_interleave(4, 1), False
    yield torch.rand(b(2, 8), 40, 8, generator=g).double().repeat_interleave(3, 2), True
    e = torch.rand(b(2, 8), 4, 36, generator=g)
    e[torch.rand(e.shape, generator=g) < 0.2] = float("inf")
    e = e.repeat_interleave(6, 1)[:, torch.randperm(24, generator=g)]
    e[:, ::5] = 0.5
    yield e, False
    yield torch.rand(b(2, 4), 1, 30, generator=g).expand(-1, 30, -1), True
    # Equal columns of square problems, solved transposed (auction.h, "Orientation"): in groups of
    # 3, and a frame with a flat region of 28 equal tokens after one without (a scene cut).
    yield torch.rand(b(2, 8), 30, 10, generator=g).repeat_interleave(3, 2), False
    yield video_similarity(b(2, 16), 196, generator=g, repeated=28).mT, True
    yield point_distances(b(2, 16), 48, generator=g), False  # stalled bidders (point_distances)
    yield torch.rand(2, 1, 1, generator=g), False
    yield torch.rand(2, 1, 5, generator=g), True
    yield torch.rand(2, 5, 1, generator=g), False
    yield torch.rand(2, 2, 2, generator=g).double(), True


def random_problems(seed, count, max_n=48):
    """Yields count random (cost, maximize) batches for fuzzing a solver: a random shape (some with
    rows longer than a 256-thread block), dtype and sense, and a random kind of values: uniform,
    small integers (ties), huge (up to +-1.7e308) or tiny (down to subnormals) ranges, magnitudes
    mixed across 600 decades, constant rows or columns, equal rows, log-normal, DETR-like, distinct
    best entries per line (first choices) and near misses; 30% of
    them with forbidden pairs (a feasible diagonal kept). Half-precision dtypes only where the
    values fit them."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n, m = (int(v) for v in rng.integers(1, max_n, 2))
        if rng.random() < 0.15:
            n, m = int(rng.integers(1, 12)), int(rng.integers(200, 320))
        B = int(rng.integers(1, 3))
        kind = rng.choice(["uniform", "int", "huge", "tiny", "mixed", "const_rows", "const_cols", "equal_rows",
                           "lognormal", "detr", "first_choices"])
        if kind == "uniform":
            c = rng.random((B, n, m))
        elif kind == "int":
            c = rng.integers(-3, 3, (B, n, m)).astype(float)
        elif kind == "huge":
            c = (rng.random((B, n, m)) * 2 - 1) * (1.7e308 if rng.random() < 0.5 else 10.0 ** rng.uniform(200, 308))
        elif kind == "tiny":
            c = rng.random((B, n, m)) * 10.0 ** -rng.uniform(200, 320)
        elif kind == "mixed":
            c = rng.random((B, n, m)) * 10.0 ** rng.uniform(-300, 300, (B, n, m))
        elif kind == "const_rows":
            c = np.repeat(rng.random((B, n, 1)), m, 2)
        elif kind == "const_cols":
            c = np.repeat(rng.random((B, 1, m)), n, 1)
        elif kind == "equal_rows":
            c = rng.random((B, n, m))
            c[:, : rng.integers(1, n + 1)] = c[:, :1]
        elif kind == "lognormal":
            c = np.exp(rng.normal(0, 30, (B, n, m)))
        elif kind == "first_choices":
            # Each line of the shorter side has one best entry (2 against values in [0, 1); negated
            # below when minimising), in distinct places, as video-like similarities do; in 30% of
            # them some lines are flat instead; in a third one line's best is tied, in another third
            # two lines share theirs.
            s, l = min(n, m), max(n, m)
            c = rng.random((B, s, l))
            at = np.stack([rng.permutation(l)[:s] for _ in range(B)])
            np.put_along_axis(c, at[..., None], 2.0, axis=2)
            if rng.random() < 0.3:  # some lines flat (one value each), which may sit among first choices
                lines = rng.choice(s, size=int(rng.integers(1, s + 1)), replace=False)
                c[:, lines] = rng.random((B, len(lines), 1))
            miss = rng.integers(3)
            if miss == 1 and l > 1:
                c[:, 0, (at[:, 0] + 1) % l] = 2.0
            elif miss == 2 and s > 1:
                c[:, 1, at[:, 0]] = 3.0
            c = c if n <= m else c.transpose(0, 2, 1).copy()
        else:
            g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
            c = detr_costs(B, n, m, float(rng.choice([0, 0.01, 0.1, 1])), generator=g).double().numpy()
        maximize = bool(rng.random() < 0.5)
        if kind == "first_choices" and not maximize:
            c = -c
        if rng.random() < 0.3:
            c = np.where(rng.random((B, n, m)) < rng.uniform(0, 0.6), np.inf, c)
            k = np.arange(min(n, m))
            c[:, k, k] = np.where(np.isinf(c[:, k, k]), 1.0, c[:, k, k])
        if maximize:
            c = np.where(np.isinf(c), -np.inf, c)
        cost = torch.from_numpy(c)
        finite = np.abs(c[np.isfinite(c) & (c != 0)])
        fits_half = finite.size == 0 or (finite.max() < 6e4 and finite.min() > 1e-4)
        dtype = rng.choice([torch.float64, torch.float32] + ([torch.float16, torch.bfloat16] if fits_half else []))
        if dtype == torch.float32 and not (finite.size == 0 or (finite.max() < 3e38 and finite.min() > 1e-37)):
            dtype = torch.float64
        yield cost.to(dtype), maximize


def objective(cost, cols):
    """Total of cost[i, cols[i]] over assigned rows, in float64 on the CPU. Checks that cols is a
    valid partial assignment covering min(N, M) rows with distinct columns."""
    c = cost.detach().cpu().double().numpy()
    s = cols.cpu().numpy()
    n, m = c.shape
    assert s.shape == (n,), f"solution shape {s.shape} for a {n}x{m} problem"
    rows = np.flatnonzero(s >= 0)
    assert len(rows) == min(n, m), f"{len(rows)} rows assigned, expected {min(n, m)}"
    assert np.all(s[s < 0] == -1) and np.all(s < m), "column index out of range"
    assert len(np.unique(s[rows])) == len(rows), "a column is assigned twice"
    return float(c[rows, s[rows]].sum())


def scipy_objective(cost, maximize=False):
    """scipy's optimal total for one 2-D problem (float64 on the CPU)."""
    from scipy.optimize import linear_sum_assignment

    c = cost.detach().cpu().double().numpy()
    r, k = linear_sum_assignment(c, maximize=maximize)
    return float(c[r, k].sum())


def tolerance(cost, algorithm="jv", maximize=False):
    """The documented objective tolerance for one 2-D problem.

    jv (CPU): 1e-9 * N * max|finite cost|, and 0 for integer-valued costs with N * max|cost| <
    2**53 (larger ones are not exact in float64, the solver's arithmetic and objective's sum).
    auction (CUDA and its CPU twin): costs are quantised to Q integer levels over their finite
    range R, so the objective is within min(N, M) * R / Q of the optimum; Q = min(2**24,
    2**40 // (n+1)) with n = max(N, M), or about 2**40 / (n+1)**2 when a pair is forbidden. Integer
    costs whose range is at most Q are not quantised: exact.
    """
    c = cost.detach().cpu().double()
    finite = c[torch.isfinite(c)]
    if finite.numel() == 0:
        return 0.0
    integral = bool((finite == finite.round()).all())
    big = max(c.shape) * float(finite.abs().max())
    float_noise = 0.0 if integral and big < 2**53 else 1e-9 * big
    if algorithm == "jv":
        return float_noise
    n1 = max(c.shape) + 1
    forbidden = finite.numel() < c.numel()
    cap = ((2**40 // n1) - 1) // n1 if forbidden else 2**40 // n1
    q = max(1, min(2**24, cap))
    r = float(finite.max() - finite.min())
    if r == 0 or (integral and r <= q):
        return float_noise
    return min(c.shape) * r / q + float_noise


def assert_optimal(cost, cols, maximize=False, algorithm="jv"):
    """Asserts that cols (..., N) solves every problem of cost (..., N, M) as well as scipy, within
    the documented tolerance of `algorithm` ("jv", or "auction" for the CUDA solver and its twin)."""
    n, m = cost.shape[-2:]
    assert cols.shape == cost.shape[:-1], f"cols has shape {tuple(cols.shape)}, expected {tuple(cost.shape[:-1])}"
    batch = cost.shape[:-2].numel()  # not reshape(-1, ...): ambiguous when N or M is 0
    flat_c = cost.reshape(batch, n, m)
    flat_s = cols.reshape(batch, n)
    for b in range(flat_c.shape[0]):
        got = objective(flat_c[b], flat_s[b])
        ref = scipy_objective(flat_c[b], maximize)
        t = tolerance(flat_c[b], algorithm, maximize)
        assert abs(got - ref) <= t, f"problem {b}: objective {got!r}, scipy {ref!r} (tolerance {t})"


def scipy_limited_assignment(cost, limit, maximize=False):
    """scipy's answer to one 2-D problem with a cost limit (linear_sum_assignment's cost_limit),
    on the construction lapx documents: a square (N+M) problem in which every row and every column
    may go unmatched at limit / 2 (rows to M dummy columns, columns to N dummy rows, dummy pairs
    free). Returns (rows, cols) of the real pairs, as numpy arrays. float64 on the CPU."""
    from scipy.optimize import linear_sum_assignment

    c = cost.detach().cpu().double().numpy()
    n, m = c.shape
    ext = np.full((n + m, m + n), limit / 2.0)
    ext[n:, m:] = 0.0
    ext[:n, :m] = c
    r, k = linear_sum_assignment(ext, maximize=maximize)
    real = (r < n) & (k < m)
    return r[real], k[real]


def assert_optimal_limited(cost, cols, limit, maximize=False, algorithm="jv"):
    """Asserts that cols (..., N) solves every problem of cost (..., N, M) with cost_limit=limit:
    distinct columns, every matched pair below the limit (above it when maximising), and a sum of
    (cost - limit) over the matched pairs equal to scipy's (scipy_limited_assignment) within the
    tolerance of `algorithm` on the problem the solvers extend it to (the shorter side as rows,
    followed by one column of the limit per row)."""
    n, m = cost.shape[-2:]
    assert cols.shape == cost.shape[:-1], f"cols has shape {tuple(cols.shape)}, expected {tuple(cost.shape[:-1])}"
    batch = cost.shape[:-2].numel()
    flat_c = cost.detach().cpu().reshape(batch, n, m).double()
    flat_s = cols.cpu().reshape(batch, n)
    for b in range(batch):
        c, s = flat_c[b], flat_s[b]
        rows = (s >= 0).nonzero().flatten()
        assert bool((s[s < 0] == -1).all()) and bool((s < m).all()), f"problem {b}: column index out of range"
        assert len(s[rows].unique()) == len(rows), f"problem {b}: a column is assigned twice"
        values = c[rows, s[rows]]
        beats = values > limit if maximize else values < limit
        assert bool(beats.all()), f"problem {b}: a matched pair does not beat the limit {limit}: {values[~beats]}"
        got = float((values - limit).sum())
        r, k = scipy_limited_assignment(c, limit, maximize)
        ref = float((c.numpy()[r, k] - limit).sum())
        t = limited_tolerance(c, limit, algorithm, maximize)
        assert abs(got - ref) <= t, f"problem {b}: sum of (cost - limit) {got!r}, scipy {ref!r} (tolerance {t})"


def limited_tolerance(cost, limit, algorithm="jv", maximize=False):
    """The documented tolerance on the sum of (cost - limit) for one 2-D problem solved with
    cost_limit=limit: `tolerance` of the problem the solvers extend it to (the shorter side as
    rows, followed by one column of the limit per row)."""
    c = cost.detach().cpu().double()
    short = c if c.shape[0] <= c.shape[1] else c.T
    ext = torch.cat([short, torch.full((short.shape[0], short.shape[0]), float(limit), dtype=torch.float64)], 1)
    return tolerance(ext, algorithm, maximize)


def auction_rounds(cost, maximize=False):
    """What the auction's solve of each problem costs, counted by its CPU twin, which runs the
    CUDA kernel's rounds exactly: int64 (..., 2), [rounds in which several rows bid, passes of the
    last bidders' path searches] (csrc/common/auction.h, "Last bidders"). On an H100 a round cost
    about 2.9 us, and a step of the single-bid chains that the searches replaced 1.15 us, in
    shared memory (README, "GPU"); a search pass, one warp's pass over a row like a chain step, is
    not yet measured. So 2.9 * rounds + 1.15 * steps estimates a problem's kernel time in
    microseconds without a GPU. Also checks eps-complementary slackness at every phase's end and
    raises RuntimeError where it fails (a bug). cost is moved to the CPU."""
    from ._ops import ops

    return ops.lsa_auction_rounds(cost.cpu(), bool(maximize))
