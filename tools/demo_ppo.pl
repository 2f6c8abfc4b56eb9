# The alignment stage's figures: SFT, best-of-4 and PPO side by side. Reads the `plumb eval world`
# results (EVAL_DIR/test_MODEL.json on the test prompts, EVAL_DIR/rephrased_MODEL.json on the
# other phrasing of PPO's questions), the `plumb bon` outputs on the test prompts (mean reward of
# one sample and of the best of 4) and PPO's metrics.jsonl (its last held-out KL per response).
# Writes the flat summary part (JSON) to stdout and the table to the file given.
# Usage: perl tools/demo_ppo.pl EVAL_DIR BON_SFT BON_PPO PPO_METRICS TABLE_OUT
use strict;
use warnings;
use JSON::PP;

my ($dir, $bon_sft, $bon_ppo, $metrics, $table) = @ARGV;

sub load {
    open my $f, '<', $_[0] or die "$_[0]: $!\n";
    return decode_json(do { local $/; <$f> });
}

# Mean of the kept (best) and of all candidates' rewards in a `plumb bon` file.
sub bon_means {
    open my $f, '<', $_[0] or die "$_[0]: $!\n";
    my ($best, $all, $n, $m) = (0, 0, 0, 0);
    while (my $line = <$f>) {
        my $r = decode_json($line);
        $best += $r->{rewards}[0];
        $n++;
        $all += $_ for @{ $r->{candidate_rewards} };
        $m += @{ $r->{candidate_rewards} };
    }
    die "$_[0]: no records\n" unless $n;
    return ($best / $n, $all / $m);
}

# The last held-out evaluation in PPO's metrics.jsonl.
sub last_eval {
    open my $f, '<', $_[0] or die "$_[0]: $!\n";
    my $last;
    while (my $line = <$f>) {
        my $r = decode_json($line);
        $last = $r if defined $r->{'eval/kl'};
    }
    die "$_[0]: no held-out evaluation\n" unless $last;
    return $last;
}

my %out;
my ($bon_best, $sft_mean) = bon_means($bon_sft);
my (undef, $ppo_mean) = bon_means($bon_ppo);
my $ev = last_eval($metrics);
$out{'sft.reward'} = $sft_mean;
$out{'bon.reward'} = $bon_best;
$out{'ppo.reward'} = $ppo_mean;
$out{'ppo.kl'} = $ev->{'eval/kl'};
for my $m (qw(base sft bon ppo)) {
    for my $set (['', 'test'], ['rephrased_', 'rephrased']) {
        my $file = "$dir/$set->[1]_$m.json";
        next unless -e $file;
        my $r = load($file)->{metrics};
        $out{"$m.$set->[0]hallucination_rate"} = $r->{hallucination_rate}{value};
        $out{"$m.$set->[0]known_accuracy"} = $r->{known_accuracy}{value};
        $out{"$m.$set->[0]unknown_abstention"} = $r->{unknown_abstention}{value};
        $out{"$m.$set->[0]harmful_refusal"} = $r->{harmful_refusal}{value}
            if $r->{harmful_refusal};
    }
}

sub cell { defined $_[0] ? sprintf('%.3f', $_[0]) : '-' }
open my $t, '>', $table or die "$table: $!\n";
print $t "Test prompts, facts and places neither the reward model nor PPO saw (sampled at temperature 1):\n";
printf $t "  %-10s %8s %8s %13s %11s %10s %9s\n", '', 'reward', 'KL', 'hallucination',
    'known acc', 'unk. IDK', 'refusal';
for my $m (qw(base sft bon ppo)) {
    next unless defined $out{"$m.hallucination_rate"};
    my $name = { base => 'base', sft => 'SFT', bon => 'best-of-4', ppo => 'PPO' }->{$m};
    my $kl = $m eq 'ppo' ? $out{'ppo.kl'} : $m eq 'sft' ? 0 : undef;
    printf $t "  %-10s %8s %8s %13s %11s %10s %9s\n", $name, cell($out{"$m.reward"}), cell($kl),
        map { cell($out{"$m.$_"}) }
        qw(hallucination_rate known_accuracy unknown_abstention harmful_refusal);
}
print $t "The other phrasing of PPO's own questions:\n";
for my $m (qw(sft bon ppo)) {
    next unless defined $out{"$m.rephrased_hallucination_rate"};
    my $name = { sft => 'SFT', bon => 'best-of-4', ppo => 'PPO' }->{$m};
    printf $t "  %-10s %8s %8s %13s %11s %10s %9s\n", $name, '', '',
        map { cell($out{"$m.rephrased_$_"}) }
        qw(hallucination_rate known_accuracy unknown_abstention harmful_refusal);
}
close $t or die "$table: $!\n";
print JSON::PP->new->canonical->encode(\%out), "\n";
