#!/usr/bin/perl
# Verify the DKIM signatures of the message on stdin with Mail::DKIM (Debian libmail-dkim-perl),
# an implementation independent of dkimpy, answering key lookups from the command line, no DNS.
#
# Usage: perl tests/dkim_verify.pl SELECTOR._domainkey.DOMAIN='v=DKIM1; k=rsa; p=...' ... < msg
# Prints one line per signature, "signature d=D s=S a=ALG result=RESULT (DETAILS)", then
# "result=RESULT" for the message as a whole; exits 0 when that is "pass", 1 otherwise.
use strict;
use warnings;

use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS;

my %records;
for my $arg (@ARGV) {
    my ( $name, $value ) = split /=/, $arg, 2;
    die "usage: $0 NAME=TXT-VALUE ...\n" unless defined $value;
    $records{ lc $name } = $value;
}

{
    no warnings 'redefine';
    # Mail::DKIM::PublicKey asks Mail::DKIM::DNS::query for the TXT RRs of
    # SELECTOR._domainkey.DOMAIN; an unknown name answers like NXDOMAIN (an empty list).
    *Mail::DKIM::DNS::query = sub {
        my ( $domain, $type ) = @_;
        my $value = $records{ lc $domain };
        return () unless defined $value && $type eq 'TXT';
        my @strings = unpack '(A255)*', $value;    # RFC 1035: 255-octet character-strings
        return Net::DNS::RR->new( name => $domain, type => 'TXT', txtdata => \@strings );
    };
}

binmode STDIN;
my $verifier = Mail::DKIM::Verifier->new();
while ( my $line = <STDIN> ) {
    $line =~ s/\r?\n\z/\r\n/;    # Mail::DKIM wants CRLF line endings
    $verifier->PRINT($line);
}
$verifier->CLOSE();

for my $signature ( $verifier->signatures ) {
    my $detail = $signature->result_detail;
    printf "signature d=%s s=%s a=%s result=%s (%s)\n", $signature->domain // '',
      $signature->selector // '', $signature->algorithm // '', $signature->result // '',
      $detail // '';
}
print 'result=', $verifier->result, "\n";
exit( $verifier->result eq 'pass' ? 0 : 1 );
