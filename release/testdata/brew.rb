# A stand-in for the parts of Homebrew that wire's formula uses, so the test
# can load the generated formula, pick the download for one platform, run
# its install block into a prefix and run its test block, as brew would.
#
#   ruby brew.rb FORMULA OS ARCH            prints "url sha256 version"
#   ruby brew.rb FORMULA OS ARCH SRC PREFIX  also installs SRC's files into
#                                            PREFIX/bin and runs the test block
#
# OS is macos or linux, ARCH arm or intel. Only Homebrew's own DSL exists
# here: a formula that calls anything else fails to load, as it would in brew.
require "pathname"
require "fileutils"

# Homebrew's Pathname extensions used by install blocks.
class Pathname
  def install(*names)
    mkpath
    names.each { |n| FileUtils.mv(n, join(File.basename(n))) }
  end

  def install_symlink(links)
    mkpath
    links.each do |src, name|
      target = Pathname(src).expand_path(self).relative_path_from(self)
      FileUtils.ln_sf(target, join(name))
    end
  end
end

class Formula
  PLATFORM = { os: ARGV[1], arch: ARGV[2] }.freeze

  class << self
    attr_reader :stanzas

    %i[desc homepage license url sha256].each do |name|
      define_method(name) do |value|
        (@stanzas ||= {})[name] = value
      end
    end

    def version(value = nil)
      return @stanzas[:version] if value.nil?

      (@stanzas ||= {})[:version] = value
    end

    def on_macos = (yield if PLATFORM[:os] == "macos")
    def on_linux = (yield if PLATFORM[:os] == "linux")
    def on_arm = (yield if PLATFORM[:arch] == "arm")
    def on_intel = (yield if PLATFORM[:arch] == "intel")

    def test(&block)
      @test = block
    end

    def service(&block)
      @service = block
    end

    def inherited(subclass)
      super
      @formula = subclass
    end

    attr_reader :formula
  end

  attr_reader :bin

  def initialize(prefix)
    @bin = Pathname(prefix).join("bin")
  end

  def version = self.class.stanzas[:version]

  def run_test = instance_eval(&self.class.instance_variable_get(:@test))

  def opt_bin = bin
  def var = Pathname(bin).dirname.join("var")

  # The service block, run as brew services reads it: its command.
  def service_command
    block = self.class.instance_variable_get(:@service) or return nil
    formula = self
    spec = Object.new
    spec.define_singleton_method(:run) { |cmd| @run = cmd.map(&:to_s) }
    spec.define_singleton_method(:keep_alive) { |v| @keep_alive = v }
    spec.define_singleton_method(:log_path) { |p| @log = p.to_s }
    spec.define_singleton_method(:error_log_path) { |p| @error_log = p.to_s }
    %i[opt_bin var].each { |m| spec.define_singleton_method(m) { formula.send(m) } }
    spec.instance_eval(&block)
    spec.instance_variable_get(:@run)
  end

  def shell_output(cmd)
    out = `#{cmd}`
    raise "#{cmd}: exit #{$?.exitstatus}" unless $?.success?

    out
  end

  def assert_match(want, got)
    raise "#{got.inspect} does not contain #{want.inspect}" unless got.include?(want)
  end
end

formula_file, _os, _arch, src, prefix = ARGV
load formula_file
klass = Formula.formula
stanzas = klass.stanzas
%i[desc homepage license version url sha256].each do |key|
  raise "formula has no #{key} for #{ARGV[1]}/#{ARGV[2]}" unless stanzas[key]
end
puts [stanzas[:url], stanzas[:sha256], stanzas[:version]].join(" ")
exit if src.nil?

f = klass.new(prefix)
Dir.chdir(src) { f.install }
raise "caveats are empty" if f.caveats.to_s.strip.empty?
f.run_test
cmd = f.service_command or raise "the formula has no service"
raise "the service runs #{cmd.inspect}, not this formula's wire server" unless cmd[0] == f.bin.join("wire").to_s && cmd[1] == "server"
# The service's command must be one wire accepts: ask it for its help.
help = f.shell_output("#{cmd[0..1].join(" ")} --help")
f.assert_match "--state-dir", help
