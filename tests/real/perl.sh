#!/bin/bash
# real_perl: perl (Debian's, which uses the system malloc: usemymalloc='n') runs a hash-, string-
# and regex-heavy script -- 50k-key hashes, nested hashes of arrays, deletes, split/join,
# substitutions with captures, tr, sprintf, pack/unpack, sorting by computed keys, big string
# building, and (if perl has ithreads) 4 threads that each build and return data.  Every result
# goes into the output and an MD5 of it.  The output must be identical without the library,
# with it (default settings) and with SYNCPOOL_ROTATE_MS=1; stderr must stay empty.
. "$(dirname "$0")/common.sh" "$@"
command -v perl >/dev/null || fail "perl is not installed"
export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0

cat >"$WORK/heavy.pl" <<'PL'
use strict;
use warnings;
use Config;
use Digest::MD5 qw(md5_hex);
my $ctx = Digest::MD5->new;
sub out { my $s = join(" ", @_); $ctx->add($s); print "$s\n"; }

my $seed = 12345;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed; }
sub word { my $n = 1 + rnd() % 20; join "", map { chr(97 + rnd() % 26) } 1 .. $n }

# big hash of strings, then deletes
my %h;
for my $i (1 .. 50000) { $h{"k$i"} = word() . ":" . ($i * 7); }
out("hash", scalar(keys %h), length(join "", map { $h{$_} } sort keys %h));
delete $h{"k$_"} for grep { $_ % 3 == 0 } 1 .. 50000;
out("after delete", scalar(keys %h));

# nested structures
my %idx;
for my $k (keys %h) { my ($w) = split /:/, $h{$k}; push @{ $idx{ substr($w, 0, 2) } }, $k; }
out("index", scalar(keys %idx), (sort { $a <=> $b } map { scalar @$_ } values %idx)[-1]);

# regexes: substitutions with captures, global matches, tr
my $text = join " ", map { $h{"k$_"} // "none$_" } 1 .. 20000;
(my $t2 = $text) =~ s/(\w+):(\d+)/$2=\U$1/g;
my $digits = () = $text =~ /\d/g;
(my $t3 = $t2) =~ tr/a-zA-Z/n-za-mN-ZA-M/;
out("regex", length($t2), $digits, md5_hex($t3));
my %freq;
$freq{$1}++ while $text =~ /\b([a-z]{3})/g;
out("freq", scalar(keys %freq), join(",", (sort { $freq{$b} <=> $freq{$a} || $a cmp $b } keys %freq)[0 .. 4]));

# split/join, sprintf, pack/unpack
my @parts = split /[ :]/, $text;
out("split", scalar(@parts), length(join "|", reverse @parts));
my $fmt = join "", map { sprintf("%08.3f|%-6s|%x;", $_ / 7, "w$_", $_ * 31) } 1 .. 50000;
out("sprintf", length($fmt), md5_hex($fmt));
my $packed = pack("N*", 1 .. 50000);
my @un = unpack("N*", $packed);
my $sum = 0; $sum += $_ for @un;
out("pack", length($packed), $sum);

# sort by computed keys (Schwartzian transform)
my @sorted = map { $_->[1] } sort { $a->[0] cmp $b->[0] or $a->[1] cmp $b->[1] }
             map { [scalar reverse($h{$_}), $_] } keys %h;
out("sorted", $sorted[0], $sorted[-1], md5_hex(join ",", @sorted[0 .. 999]));

# string building and repeated realloc
my $big = "";
$big .= word() x 3 for 1 .. 30000;
out("big", length($big), md5_hex($big));

# threads, if this perl has them: each builds data, the main thread joins the results
if ($Config{useithreads}) {
    require threads;
    my @thr = map {
        my $n = $_;
        threads->create(sub {
            my %m; my $s = 7 * $n + 1;
            for my $i (1 .. 15000) { $s = ($s * 69069 + 1) % 4294967296; $m{$s % 50000} .= "x$i"; }
            my $len = 0; $len += length($m{$_}) for keys %m;
            return scalar(keys %m) . "/" . $len;
        })
    } 1 .. 4;
    out("threads", map { $_->join } @thr);
} else {
    out("threads", "none");
}
print "digest ", $ctx->hexdigest, "\n";
PL

without perl "$WORK/heavy.pl" >"$WORK/ref.txt" 2>"$WORK/ref.err" || fail "perl without the library failed: $(head -c 1000 "$WORK/ref.err")"
[ -s "$WORK/ref.err" ] && fail "perl wrote to stderr without the library: $(head -c 1000 "$WORK/ref.err")"
grep -q '^digest ' "$WORK/ref.txt" || fail "perl: no digest line"
for cfg in "" "SYNCPOOL_ROTATE_MS=1"; do
    with env $cfg perl "$WORK/heavy.pl" >"$WORK/with.txt" 2>"$WORK/with.err" \
        || fail "perl with the library (${cfg:-default settings}): exit status $?: $(head -c 1000 "$WORK/with.err")"
    same "$WORK/ref.txt" "$WORK/with.txt" "perl heavy.pl ${cfg:-(default settings)}"
    [ -s "$WORK/with.err" ] && fail "perl wrote to stderr with the library (${cfg:-default}): $(head -c 1000 "$WORK/with.err")"
done
echo "real_perl: OK ($(wc -l <"$WORK/ref.txt") lines identical in 2 configurations; $(grep '^threads' "$WORK/ref.txt"))"
