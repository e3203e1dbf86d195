<?php
// Increments $_SESSION['counter'] of one session `times` times, one session_start ..
// session_write_close per increment, so the handler's lock is what keeps concurrent
// incrementers from losing updates. holdMs: sleep while holding the session (widens the
// race a missing lock would lose); pauseMs: sleep between increments (lets others in).
// With times=0 it only reads the counter.
// Args: id=, times=, holdMs=1, pauseMs=1.
// Summary: {ok (increments done), counter (value after the last one), errors, maxMs, slowestId,
// requests (each increment done: [wall-clock start in ms since the epoch, ms taken]), warnings}.
declare(strict_types=1);
require __DIR__ . '/common.php';

$args = rc_args();
$id = rc_str($args, 'id');
$times = rc_int($args, 'times');
$holdUs = rc_int($args, 'holdMs', 1) * 1000;
$pauseUs = rc_int($args, 'pauseMs', 1) * 1000;
$ok = 0;
$counter = null;
$errors = [];
$maxMs = 0.0;
$requests = [];

// Read it as a page would: start and close normally. (read_and_close would leave
// pecl-memcache's lock taken until memcache.lock_timeout, since its close does not unlock.)
if ($times === 0) {
    session_id($id);
    if (session_start()) {
        $counter = $_SESSION['counter'] ?? null;
        if (!session_write_close()) {
            $errors[] = "$id: session_write_close failed";
        }
    } else {
        $errors[] = "$id: session_start failed";
    }
}

for ($i = 0; $i < $times; $i++) {
    $t0 = hrtime(true);
    $at = microtime(true) * 1000;
    session_id($id);
    if (!session_start()) {
        $errors[] = "$id: session_start failed at increment $i";
        continue;
    }
    $counter = (int) ($_SESSION['counter'] ?? 0) + 1;
    if ($holdUs > 0) {
        usleep($holdUs);
    }
    $_SESSION['counter'] = $counter;
    if (!session_write_close()) {
        $errors[] = "$id: session_write_close failed at increment $i";
        continue;
    }
    $ms = rc_ms($t0);
    $maxMs = max($maxMs, $ms);
    $requests[] = [round($at, 1), round($ms, 1)];
    $ok++;
    if ($pauseUs > 0) {
        usleep($pauseUs);
    }
}

rc_finish(['ok' => $ok, 'counter' => $counter, 'errors' => $errors, 'maxMs' => $maxMs, 'slowestId' => $times > 0 ? $id : null, 'requests' => $requests]);
