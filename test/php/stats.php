<?php
// What each PHP extension's getStats() returns for each stats type, as one JSON line:
// `true` when a call without a type returns an array, else false (var_export'ed) or the
// sorted names of the figures (php-memcached: the one server's). Items of two sizes are
// stored first, so that the tables have rows. Args: host=, port=.
declare(strict_types=1);

parse_str(implode('&', array_slice($argv, 1)), $args);
$host = (string) $args['host'];
$port = (int) $args['port'];
$shape = static function ($r) {
    if (!is_array($r)) {
        return var_export($r, true);
    }
    $keys = array_map('strval', array_keys($r));
    sort($keys);
    return $keys;
};
$out = [];

$m = new Memcache();
$m->connect($host, $port);
$m->set('php:stats:small', str_repeat('x', 10));
$m->set('php:stats:large', str_repeat('x', 500));
foreach ([[], ['items'], ['slabs'], ['sizes'], ['cachedump', 1, 10], ['malloc'], ['maps'], ['reset']] as $call) {
    $r = @$m->getStats(...$call);
    $out['pecl-memcache ' . ($call[0] ?? '(none)')] = $call === [] ? is_array($r) : $shape($r);
}

foreach ([false, true] as $binary) {
    $md = new Memcached();
    $md->setOption(Memcached::OPT_BINARY_PROTOCOL, $binary);
    $md->addServer($host, $port);
    foreach ([null, 'items', 'slabs', 'sizes', 'settings', 'reset', 'detail dump'] as $type) {
        $r = $type === null ? $md->getStats() : $md->getStats($type);
        $server = is_array($r) ? ($r["$host:$port"] ?? null) : $r;
        $name = 'php-memcached ' . ($binary ? 'binary ' : 'text ') . ($type ?? '(none)');
        $out[$name] = $type === null ? is_array($server) : $shape($server);
    }
}
echo json_encode($out), "\n";
